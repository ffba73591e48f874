"""Reference forward pass of the decoder-only models Gantry serves, in numpy.

Design: clarity over speed. The whole prompt is evaluated at once with dense
matrices in float64 (float32 on request): every weight is dequantized once
(quants.py) and cached, and each operation is written the way the model's
paper / llama.cpp graph defines it, so that it can be read against them.
Architectures differ only through the feature flags of ARCHS (llama, qwen2,
qwen3, qwen2moe, qwen3moe, gemma3: embedding scale, post-norms, GELU, sliding window,
soft-cap); a new family adds an entry there and the corresponding branches in
Model.forward / Model._block, nothing else. The output head may be kept in
float32 (head_dtype) for large vocabularies.

Weights are kept in numpy order: a GGUF tensor with ne = [n_in, n_out] is
an array [n_out, n_in], so y = x @ W.T.
"""
import numpy as np

from gguf import GGUFFile
from quants import tensor_f32

# Per-architecture features (general.architecture -> flags).
ARCHS = {
    "llama": dict(rope_neox=False, qkv_bias=False, qk_norm=False, eps=1e-5, moe_norm_topk=True,
                  shared_expert=False),
    "qwen2": dict(rope_neox=True, qkv_bias=True, qk_norm=False, eps=1e-6, moe_norm_topk=False,
                  shared_expert=False),
    "qwen3": dict(rope_neox=True, qkv_bias=False, qk_norm=True, eps=1e-6, moe_norm_topk=True,
                  shared_expert=False),
    "qwen2moe": dict(rope_neox=True, qkv_bias=True, qk_norm=False, eps=1e-6, moe_norm_topk=False,
                     shared_expert=True),
    # Qwen3-MoE (30B-A3B, 235B-A22B): qwen3's QK-norm attention; softmax over all experts,
    # top-k, the chosen weights renormalised to sum 1 (norm_topk_prob); no shared expert.
    "qwen3moe": dict(rope_neox=True, qkv_bias=False, qk_norm=True, eps=1e-6, moe_norm_topk=True,
                     shared_expert=False),
    # Gemma 3: embeddings scaled by sqrt(n_embd), post-attention / post-FFN norms, tanh-GELU
    # gated MLP, sliding-window layers with their own rope base, optional logit soft-cap.
    # Its norm weights are stored already shifted by +1 (the converter adds it), so
    # x/rms(x)*w is right for it as for llama.
    "gemma3": dict(rope_neox=True, qkv_bias=False, qk_norm=True, eps=1e-6, moe_norm_topk=True,
                   shared_expert=False, embd_scale=True, post_norms=True, gelu=True, swa=True,
                   rope_base=1e6),
}
# Flags only some architectures set (absent = off).
for _f in ARCHS.values():
    for _k in ("embd_scale", "post_norms", "gelu", "swa"):
        _f.setdefault(_k, False)
    _f.setdefault("rope_base", 10000.0)


class Hparams:
    def __init__(self, gf):
        a = gf.arch()
        if a not in ARCHS:
            raise NotImplementedError(f"{gf.path}: architecture {a} has no reference yet")
        self.arch = a
        self.flags = ARCHS[a]

        def get(key, default=None):
            v = gf.get(f"{a}.{key}", default)
            if v is None:
                raise KeyError(f"{gf.path}: missing {a}.{key}")
            return v

        self.n_embd = int(get("embedding_length"))
        self.n_layer = int(get("block_count"))
        self.n_head = int(get("attention.head_count"))
        self.n_head_kv = int(get("attention.head_count_kv", self.n_head))
        self.head_dim = int(get("attention.key_length", self.n_embd // self.n_head))
        self.n_rot = int(get("rope.dimension_count", self.head_dim))
        self.eps = float(get("attention.layer_norm_rms_epsilon", self.flags["eps"]))
        self.rope_base = float(get("rope.freq_base", self.flags["rope_base"]))
        # Linear rope scaling (positions divided by the factor), global layers only.
        self.rope_scale = 1.0
        stype = gf.get(f"{a}.rope.scaling.type", "none")
        if stype not in ("none", "linear"):
            raise NotImplementedError(f"{gf.path}: rope scaling {stype} has no reference")
        if stype == "linear":
            self.rope_scale = 1.0 / float(get("rope.scaling.factor", 1.0))
        # Sliding window (gemma3): layer i is global when i % pattern == pattern - 1; the
        # others see the last `window` keys, their own position included, and use
        # rope base rope.freq_base_swa without scaling.
        self.window = int(get("attention.sliding_window", 0)) if self.flags["swa"] else 0
        self.swa_pattern = int(get("attention.sliding_window_pattern", 6)) if self.window else 0
        self.rope_base_swa = float(get("rope.freq_base_swa", 10000.0))
        self.final_softcap = float(get("final_logit_softcapping", 0.0))
        self.n_expert = int(get("expert_count", 0))
        self.n_expert_used = int(get("expert_used_count", 0))
        self.tied = "output.weight" not in gf.tensors
        emb = gf.tensors["token_embd.weight"]
        self.n_vocab = emb.ne[1]

    def layer_is_swa(self, il):
        return self.window > 0 and il % self.swa_pattern != self.swa_pattern - 1


def rms_norm(x, w, eps):
    """x: [..., n]; w: [n]."""
    ms = np.mean(x * x, axis=-1, keepdims=True)
    return x / np.sqrt(ms + eps) * w


def silu(x):
    return x / (1.0 + np.exp(-x))


def gelu_tanh(x):
    """GELU, tanh approximation (Gemma's hidden_activation gelu_pytorch_tanh), exact math."""
    return 0.5 * x * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * x ** 3)))


def softmax(x, axis=-1):
    m = np.max(x, axis=axis, keepdims=True)
    e = np.exp(x - m)
    return e / np.sum(e, axis=axis, keepdims=True)


def q8_round(x):
    """Round-trips x [T, n] through 8-bit symmetric quantization in blocks of 32
    (scale = max|x| / 127 per block), as on-the-fly activation quantization does."""
    T, n = x.shape
    b = x.reshape(T, n // 32, 32)
    d = np.max(np.abs(b), axis=-1, keepdims=True) / 127.0
    q = np.round(np.divide(b, d, out=np.zeros_like(b), where=d > 0))
    return (q * d).reshape(T, n)


def rope(x, pos, n_rot, base, neox, scale=1.0):
    """x: [T, H, D]; pos: [T]. Rotates the first n_rot dims of each head.

    Normal (llama/GPT-J) style turns adjacent pairs (2i, 2i+1); NeoX style
    (qwen, gemma3) turns (i, i + n_rot/2). Pair i turns by
    pos * scale * base^(-2i/n_rot) (scale = 1/factor of linear rope scaling)."""
    half = n_rot // 2
    inv = base ** (-2.0 * np.arange(half, dtype=np.float64) / n_rot)  # [half]
    ang = (pos.astype(np.float64) * scale)[:, None] * inv[None, :]  # [T, half]
    cos = np.cos(ang)[:, None, :].astype(x.dtype)
    sin = np.sin(ang)[:, None, :].astype(x.dtype)
    out = x.copy()
    if neox:
        x0, x1 = x[..., 0:half], x[..., half:n_rot]
        out[..., 0:half] = x0 * cos - x1 * sin
        out[..., half:n_rot] = x0 * sin + x1 * cos
    else:
        x0, x1 = x[..., 0:n_rot:2], x[..., 1:n_rot:2]
        out[..., 0:n_rot:2] = x0 * cos - x1 * sin
        out[..., 1:n_rot:2] = x0 * sin + x1 * cos
    return out


class Model:
    def __init__(self, path, dtype=np.float64, act_q8=False, kv_f16=False, route_override=None,
                 head_dtype=None):
        """act_q8 and kv_f16 emulate the engine's two deliberate roundings (used to
        size the comparison bounds, see docs/reference.md): Q8 quantization of
        matmul inputs in 32-element blocks when the weight is quantized, and an
        f16 KV cache. Both are off for the oracle itself.

        head_dtype (e.g. np.float32) keeps the output head's weight in that type
        and does the head product in it: for a 262k-vocabulary model the float64
        head is 1.3 GB and most of the run time. The dequantized weights are
        exact in float32, so only the accumulation differs (relative ~1e-7 per
        logit, far below any bound the tests use)."""
        self.gf = GGUFFile(path)
        self.hp = Hparams(self.gf)
        self.dtype = dtype
        self.head_dtype = head_dtype if head_dtype is not None else dtype
        self.act_q8 = act_q8
        self.kv_f16 = kv_f16
        self.route_override = route_override or {}
        self.router_ties = []
        self._cache = {}

    def w(self, name):
        """Dequantized tensor in numpy order ([n_out, n_in] for matrices)."""
        if name not in self._cache:
            self._cache[name] = tensor_f32(self.gf.tensors[name]).astype(self.dtype)
        return self._cache[name]

    def has(self, name):
        return name in self.gf.tensors

    def mm(self, x, name, expert=None):
        """x [T, n_in] @ W^T for the weight `name` (one expert's slice when given)."""
        w = self.w(name)
        if expert is not None:
            w = w[expert]
        if self.act_q8 and self.gf.tensors[name].type_name not in ("F32", "F16", "BF16"):
            x = q8_round(x)
        return x @ w.T

    # -- blocks --
    def _attention(self, il, x, pos):
        hp, f = self.hp, self.hp.flags
        p = f"blk.{il}."
        T, hd = x.shape[0], hp.head_dim
        q = self.mm(x, p + "attn_q.weight")  # [T, n_head*hd]
        k = self.mm(x, p + "attn_k.weight")  # [T, n_kv*hd]
        v = self.mm(x, p + "attn_v.weight")  # [T, n_kv*hd]
        if f["qkv_bias"]:
            q = q + self.w(p + "attn_q.bias")
            k = k + self.w(p + "attn_k.bias")
            v = v + self.w(p + "attn_v.bias")
        q = q.reshape(T, hp.n_head, hd)
        k = k.reshape(T, hp.n_head_kv, hd)
        v = v.reshape(T, hp.n_head_kv, hd)
        if f["qk_norm"]:
            q = rms_norm(q, self.w(p + "attn_q_norm.weight"), hp.eps)
            k = rms_norm(k, self.w(p + "attn_k_norm.weight"), hp.eps)
        swa = hp.layer_is_swa(il)
        base, rscale = (hp.rope_base_swa, 1.0) if swa else (hp.rope_base, hp.rope_scale)
        q = rope(q, pos, hp.n_rot, base, f["rope_neox"], rscale)
        k = rope(k, pos, hp.n_rot, base, f["rope_neox"], rscale)
        if self.kv_f16:
            k = k.astype(np.float16).astype(self.dtype)
            v = v.astype(np.float16).astype(self.dtype)
        group = hp.n_head // hp.n_head_kv
        mask = np.triu(np.full((T, T), -np.inf, dtype=self.dtype), k=1)  # causal
        if swa:  # query p sees keys p-W+1 .. p
            mask = mask + np.tril(np.full((T, T), -np.inf, dtype=self.dtype), k=-hp.window)
        out = np.empty((T, hp.n_head, hd), dtype=self.dtype)
        scale = 1.0 / np.sqrt(hd)
        for h in range(hp.n_head):
            kh, vh = k[:, h // group, :], v[:, h // group, :]  # GQA: head h reads kv head h/group
            s = (q[:, h, :] @ kh.T) * scale + mask  # [T, T]
            out[:, h, :] = softmax(s, axis=-1) @ vh
        return self.mm(out.reshape(T, hp.n_head * hd), p + "attn_output.weight")

    def _mlp(self, x, gate, up, down, expert=None):
        """SwiGLU: down(silu(gate x) * up x), or GeGLU with tanh-GELU (gemma3);
        gate/up [n_ff, n_embd], down [n_embd, n_ff]."""
        act = gelu_tanh if self.hp.flags["gelu"] else silu
        h = act(self.mm(x, gate, expert)) * self.mm(x, up, expert)
        return self.mm(h, down, expert)

    def _moe(self, il, x):
        hp, f = self.hp, self.hp.flags
        p = f"blk.{il}."
        logits = x @ self.w(p + "ffn_gate_inp.weight").T  # [T, n_expert]
        probs = softmax(logits, axis=-1)
        # Experts: gate/up [n_expert, n_ff_exp, n_embd], down [n_expert, n_embd, n_ff_exp].
        gate, up, down = (p + "ffn_gate_exps.weight", p + "ffn_up_exps.weight",
                          p + "ffn_down_exps.weight")
        out = np.zeros_like(x)
        k = hp.n_expert_used
        for t in range(x.shape[0]):
            # Top-k by probability; ties broken towards the lower expert index.
            rank = np.argsort(-probs[t], kind="stable")
            sel = rank[:k]
            if k < hp.n_expert:
                self.router_ties.append((il, t, float(logits[t, rank[k - 1]] - logits[t, rank[k]]),
                                         [int(e) for e in rank]))
            if (il, t) in self.route_override:
                sel = np.asarray(self.route_override[(il, t)])
            wts = probs[t, sel]
            if f["moe_norm_topk"]:
                wts = wts / np.sum(wts)  # = softmax over the selected logits (Mixtral)
            for e, we in zip(sel, wts):
                out[t] += we * self._mlp(x[t:t + 1], gate, up, down, expert=e)[0]
        if f["shared_expert"]:
            g = 1.0 / (1.0 + np.exp(-(x @ self.w(p + "ffn_gate_inp_shexp.weight"))))  # [T]
            sh = self._mlp(x, p + "ffn_gate_shexp.weight", p + "ffn_up_shexp.weight",
                           p + "ffn_down_shexp.weight")
            out = out + g[:, None] * sh
        return out

    def _block(self, il, x, pos):
        hp = self.hp
        post = hp.flags["post_norms"]
        p = f"blk.{il}."
        h = rms_norm(x, self.w(p + "attn_norm.weight"), hp.eps)
        a = self._attention(il, h, pos)
        if post:
            a = rms_norm(a, self.w(p + "post_attention_norm.weight"), hp.eps)
        x = x + a
        h = rms_norm(x, self.w(p + "ffn_norm.weight"), hp.eps)
        if hp.n_expert > 0:
            m = self._moe(il, h)
        else:
            m = self._mlp(h, p + "ffn_gate.weight", p + "ffn_up.weight", p + "ffn_down.weight")
        if post:
            m = rms_norm(m, self.w(p + "post_ffw_norm.weight"), hp.eps)
        return x + m

    def forward(self, tokens):
        """tokens: list of ids at positions 0..T-1 -> logits [T, n_vocab] in self.dtype."""
        hp = self.hp
        tokens = np.asarray(tokens, dtype=np.int64)
        if tokens.min() < 0 or tokens.max() >= hp.n_vocab:
            raise ValueError(f"token ids must be within 0..{hp.n_vocab - 1}")
        x = self.embed(tokens)  # [T, n_embd]
        if hp.flags["embd_scale"]:
            x = x * np.sqrt(float(hp.n_embd))
        pos = np.arange(len(tokens))
        for il in range(hp.n_layer):
            x = self._block(il, x, pos)
        x = rms_norm(x, self.w("output_norm.weight"), hp.eps)
        logits = self.head(x)  # [T, n_vocab]
        if hp.final_softcap > 0:
            c = hp.final_softcap
            logits = c * np.tanh(logits / c)
        return logits

    def _head_w(self):
        """The head weight [n_vocab, n_embd] in head_dtype (the embedding when tied)."""
        name = "token_embd.weight" if self.hp.tied else "output.weight"
        key = (name, "head")
        if key not in self._cache:
            self._cache[key] = tensor_f32(self.gf.tensors[name]).astype(self.head_dtype)
        return name, self._cache[key]

    def embed(self, tokens):
        """Embedding rows of `tokens`, from the head's copy when the head is tied and
        kept in another precision (exact: dequantized values fit float32)."""
        if self.hp.tied and self.head_dtype != self.dtype:
            return self._head_w()[1][tokens].astype(self.dtype)
        return self.w("token_embd.weight")[tokens]

    def head(self, x):
        """x [T, n_embd] -> logits [T, n_vocab] (product in head_dtype)."""
        if self.head_dtype == self.dtype:
            return self.mm(x, "token_embd.weight" if self.hp.tied else "output.weight")
        name, w = self._head_w()
        if self.act_q8 and self.gf.tensors[name].type_name not in ("F32", "F16", "BF16"):
            x = q8_round(x)
        return (x.astype(self.head_dtype) @ w.T).astype(self.dtype)
