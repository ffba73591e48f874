/* Chat formatting tests.
 *
 * The independent side: expected prompts copied from llama.cpp's
 * tests/test-chat-template.cpp (its templates and expected outputs for one
 * six-message conversation), real chat templates of SmolLM2-135M-Instruct,
 * Qwen2.5-Instruct, Gemma 3 and Llama 3.0/3.2 (as published in their
 * tokenizer_config.json files) with expected prompts rendered by hand from
 * the Jinja text, and the Phi-3 template stored in a real GGUF vocabulary
 * under shared/vocab. Failures print both strings and the first byte where
 * they differ. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "model/chat.h"
#include "model/gguf.h"
#include "util/test_util.h"

static int same(const char *label, const char *got, const char *want) {
    if (got && strcmp(got, want) == 0) return 1;
    size_t i = 0;
    while (got && got[i] && got[i] == want[i]) i++;
    fprintf(stderr, "%s: first difference at byte %zu\n  want: \"", label, i);
    for (const char *p = want; *p; p++) fputs(*p == '\n' ? "\\n" : (char[2]){*p, 0}, stderr);
    fprintf(stderr, "\"\n  got:  \"");
    for (const char *p = got ? got : "(null)"; *p; p++) fputs(*p == '\n' ? "\\n" : (char[2]){*p, 0}, stderr);
    fprintf(stderr, "\"\n");
    return 0;
}

/* The conversation of llama.cpp's test-chat-template.cpp. */
static const gt_chat_msg k_conv[] = {
    {"system", "You are a helpful assistant"},
    {"user", "Hello"},
    {"assistant", "Hi there"},
    {"user", "Who are you"},
    {"assistant", "   I am an assistant   "},
    {"user", "Another question"},
};
#define N_CONV (sizeof k_conv / sizeof k_conv[0])

static char *apply(const gt_chat_template *t, const gt_chat_msg *m, size_t n, bool gen) {
    char *out = NULL;
    size_t len = 0;
    gt_status st = gt_chat_apply(t, m, n, gen, &out, &len);
    if (st != GT_OK) fprintf(stderr, "gt_chat_apply: %s\n", gt_last_error());
    assert_int_equal(st, GT_OK);
    assert_non_null(out);
    assert_int_equal(len, strlen(out));
    return out;
}

/* ---- llama.cpp's test vectors: template text, family, expected prompt ---- */

typedef struct vec {
    const char *name;
    gt_chat_format format;
    const char *tmpl;
    const char *want;
} vec;

static const vec k_vecs[] = {
    {"teknium/OpenHermes-2.5-Mistral-7B", GT_CHAT_CHATML,
     "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}",
     "<|im_start|>system\nYou are a helpful assistant<|im_end|>\n<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\nHi there<|im_end|>\n<|im_start|>user\nWho are you<|im_end|>\n<|im_start|>assistant\n   I am an assistant   <|im_end|>\n<|im_start|>user\nAnother question<|im_end|>\n<|im_start|>assistant\n"},
    {"mistralai/Mistral-7B-Instruct-v0.2", GT_CHAT_LLAMA2,
     "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token}}{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}",
     "[INST] You are a helpful assistant\nHello [/INST]Hi there</s>[INST] Who are you [/INST]   I am an assistant   </s>[INST] Another question [/INST]"},
    {"TheBloke/FusionNet_34Bx2_MoE-AWQ", GT_CHAT_LLAMA2_SYS_BOS,
     "{%- for idx in range(0, messages|length) -%}\n{%- if messages[idx]['role'] == 'user' -%}\n{%- if idx > 1 -%}\n{{- bos_token + '[INST] ' + messages[idx]['content'] + ' [/INST]' -}}\n{%- else -%}\n{{- messages[idx]['content'] + ' [/INST]' -}}\n{%- endif -%}\n{% elif messages[idx]['role'] == 'system' %}\n{{- '[INST] <<SYS>>\\n' + messages[idx]['content'] + '\\n<</SYS>>\\n\\n' -}}\n{%- elif messages[idx]['role'] == 'assistant' -%}\n{{- ' '  + messages[idx]['content'] + ' ' + eos_token -}}\n{% endif %}\n{% endfor %}",
     "[INST] <<SYS>>\nYou are a helpful assistant\n<</SYS>>\n\nHello [/INST]Hi there</s><s>[INST] Who are you [/INST]   I am an assistant   </s><s>[INST] Another question [/INST]"},
    {"bofenghuang/vigogne-2-70b-chat", GT_CHAT_LLAMA2_SYS_STRIP,
     "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = messages[0]['content'] %}{% elif true == true and not '<<SYS>>' in messages[0]['content'] %}{% set loop_messages = messages %}{% set system_message = 'Vous \xc3\xaates Vigogne, un assistant IA cr\xc3\xa9\xc3\xa9 par Zaion Lab. Vous suivez extr\xc3\xaamement bien les instructions. Aidez autant que vous le pouvez.' %}{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif %}{% for message in loop_messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if loop.index0 == 0 and system_message != false %}{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}{% else %}{% set content = message['content'] %}{% endif %}{% if message['role'] == 'user' %}{{ '[INST] ' + content.strip() + ' [/INST]' }}{% elif message['role'] == 'system' %}{{ '<<SYS>>\\n' + content.strip() + '\\n<</SYS>>\\n\\n' }}{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}",
     "[INST] <<SYS>>\nYou are a helpful assistant\n<</SYS>>\n\nHello [/INST]Hi there</s>[INST] Who are you [/INST]I am an assistant</s>[INST] Another question [/INST]"},
    {"google/gemma-7b-it", GT_CHAT_GEMMA,
     "{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if (message['role'] == 'assistant') %}{% set role = 'model' %}{% else %}{% set role = message['role'] %}{% endif %}{{ '<start_of_turn>' + role + '\\n' + message['content'] | trim + '<end_of_turn>\\n' }}{% endfor %}{% if add_generation_prompt %}{{'<start_of_turn>model\\n'}}{% endif %}",
     "<start_of_turn>user\nYou are a helpful assistant\n\nHello<end_of_turn>\n<start_of_turn>model\nHi there<end_of_turn>\n<start_of_turn>user\nWho are you<end_of_turn>\n<start_of_turn>model\nI am an assistant<end_of_turn>\n<start_of_turn>user\nAnother question<end_of_turn>\n<start_of_turn>model\n"},
    {"deepseek-ai/deepseek-coder-33b-instruct", GT_CHAT_DEEPSEEK,
     "{% if not add_generation_prompt is defined %}\n{% set add_generation_prompt = false %}\n{% endif %}\n{%- set ns = namespace(found=false) -%}\n{%- for message in messages -%}\n    {%- if message['role'] == 'system' -%}\n        {%- set ns.found = true -%}\n    {%- endif -%}\n{%- endfor -%}\n{{bos_token}}{%- if not ns.found -%}\n{{'You are an AI programming assistant, utilizing the Deepseek Coder model, developed by Deepseek Company, and you only answer questions related to computer science. For politically sensitive questions, security and privacy issues, and other non-computer science questions, you will refuse to answer\\n'}}\n{%- endif %}\n{%- for message in messages %}\n    {%- if message['role'] == 'system' %}\n{{ message['content'] }}\n    {%- else %}\n        {%- if message['role'] == 'user' %}\n{{'### Instruction:\\n' + message['content'] + '\\n'}}\n        {%- else %}\n{{'### Response:\\n' + message['content'] + '\\n<|EOT|>\\n'}}\n        {%- endif %}\n    {%- endif %}\n{%- endfor %}\n{% if add_generation_prompt %}\n{{'### Response:'}}\n{% endif %}",
     "You are a helpful assistant### Instruction:\nHello\n### Response:\nHi there\n<|EOT|>\n### Instruction:\nWho are you\n### Response:\n   I am an assistant   \n<|EOT|>\n### Instruction:\nAnother question\n### Response:\n"},
    {"eachadea/vicuna-13b-1.1", GT_CHAT_VICUNA,
     "{%- for message in messages %}{%- if message['role'] == 'system' -%}{{- '' + message['content'] + '\n\n' -}}{%- else -%}{%- if message['role'] == 'user' -%}{{-'USER: ' + message['content'] + '\n'-}}{%- else -%}{{-'ASSISTANT: ' + message['content'] + '</s>\n' -}}{%- endif -%}{%- endif -%}{%- endfor -%}{%- if add_generation_prompt -%}{{-'ASSISTANT:'-}}{%- endif -%}",
     "You are a helpful assistant\n\nUSER: Hello\nASSISTANT: Hi there</s>\nUSER: Who are you\nASSISTANT:    I am an assistant   </s>\nUSER: Another question\nASSISTANT:"},
    {"Orca-Vicuna", GT_CHAT_VICUNA_ORCA,
     "{%- for message in messages %}{%- if message['role'] == 'system' -%}{{-'SYSTEM: ' + message['content'] + '\n' -}}{%- else -%}{%- if message['role'] == 'user' -%}{{-'USER: ' + message['content'] + '\n'-}}{%- else -%}{{-'ASSISTANT: ' + message['content'] + '</s>\n' -}}{%- endif -%}{%- endif -%}{%- endfor -%}{%- if add_generation_prompt -%}{{-'ASSISTANT:'-}}{%- endif -%}",
     "SYSTEM: You are a helpful assistant\nUSER: Hello\nASSISTANT: Hi there</s>\nUSER: Who are you\nASSISTANT:    I am an assistant   </s>\nUSER: Another question\nASSISTANT:"},
    {"Llama-3", GT_CHAT_LLAMA3,
     "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}",
     "<|start_header_id|>system<|end_header_id|>\n\nYou are a helpful assistant<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nHi there<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nWho are you<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nI am an assistant<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nAnother question<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"},
    {"Phi-3-mini", GT_CHAT_PHI3,
     "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') %}{{'<|user|>' + '\n' + message['content'] + '<|end|>' + '\n' + '<|assistant|>' + '\n'}}{% elif (message['role'] == 'assistant') %}{{message['content'] + '<|end|>' + '\n'}}{% endif %}{% endfor %}",
     "<|system|>\nYou are a helpful assistant<|end|>\n<|user|>\nHello<|end|>\n<|assistant|>\nHi there<|end|>\n<|user|>\nWho are you<|end|>\n<|assistant|>\n   I am an assistant   <|end|>\n<|user|>\nAnother question<|end|>\n<|assistant|>\n"},
    {"Phi-3-small", GT_CHAT_PHI3,
     "{{ bos_token }}{% for message in messages %}{{'<|' + message['role'] + '|>' + '\n' + message['content'] + '<|end|>\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% else %}{{ eos_token }}{% endif %}",
     "<|system|>\nYou are a helpful assistant<|end|>\n<|user|>\nHello<|end|>\n<|assistant|>\nHi there<|end|>\n<|user|>\nWho are you<|end|>\n<|assistant|>\n   I am an assistant   <|end|>\n<|user|>\nAnother question<|end|>\n<|assistant|>\n"},
    {"mistralai/Mistral-7B-Instruct-v0.2 (v1 template)", GT_CHAT_MISTRAL_V1,
     "{%- if messages[0]['role'] == 'system' %}\n    {%- set system_message = messages[0]['content'] %}\n    {%- set loop_messages = messages[1:] %}\n{%- else %}\n    {%- set loop_messages = messages %}\n{%- endif %}\n\n{{- bos_token }}\n{%- for message in loop_messages %}\n    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}\n        {{- raise_exception('After the optional system message, conversation roles must alternate user/assistant/user/assistant/...') }}\n    {%- endif %}\n    {%- if message['role'] == 'user' %}\n        {%- if loop.first and system_message is defined %}\n            {{- ' [INST] ' + system_message + '\\n\\n' + message['content'] + ' [/INST]' }}\n        {%- else %}\n            {{- ' [INST] ' + message['content'] + ' [/INST]' }}\n        {%- endif %}\n    {%- elif message['role'] == 'assistant' %}\n        {{- ' ' + message['content'] + eos_token}}\n    {%- else %}\n        {{- raise_exception('Only user and assistant roles are supported, with the exception of an initial optional system message!') }}\n    {%- endif %}\n{%- endfor %}\n",
     " [INST] You are a helpful assistant\n\nHello [/INST] Hi there</s> [INST] Who are you [/INST]    I am an assistant   </s> [INST] Another question [/INST]"},
    {"mistralai/Mistral-Large-Instruct-2411 (v7)", GT_CHAT_MISTRAL_V7,
     "{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + '[/INST]' }}{% elif message['role'] == 'system' %}{{ '[SYSTEM_PROMPT] ' + message['content'] + '[/SYSTEM_PROMPT]' }}{% elif message['role'] == 'assistant' %}{{ ' ' + message['content'] + eos_token }}{% else %}{{ raise_exception('Only user, system and assistant roles are supported!') }}{% endif %}{% endfor %}",
     "[SYSTEM_PROMPT] You are a helpful assistant[/SYSTEM_PROMPT][INST] Hello[/INST] Hi there</s>[INST] Who are you[/INST]    I am an assistant   </s>[INST] Another question[/INST]"},
};

static void test_llama_cpp_vectors(void **state) {
    (void)state;
    int bad = 0;
    for (size_t i = 0; i < sizeof k_vecs / sizeof k_vecs[0]; i++) {
        const vec *v = &k_vecs[i];
        gt_chat_template t;
        gt_status st = gt_chat_template_parse(v->tmpl, strlen(v->tmpl), v->name, &t);
        if (st != GT_OK || t.format != v->format) {
            fprintf(stderr, "%s: detected %s, want %s (%s)\n", v->name, gt_chat_format_name(t.format),
                    gt_chat_format_name(v->format), st ? gt_last_error() : "ok");
            bad++;
            continue;
        }
        assert_false(t.has_default_system);
        char *out = apply(&t, k_conv, N_CONV, true);
        bad += !same(v->name, out, v->want);
        free(out);
    }
    assert_int_equal(bad, 0);
}

/* Mistral v3 and v3-tekken by name (their published templates are long;
 * expected outputs from the same llama.cpp test file). */
static void test_mistral_v3_by_name(void **state) {
    (void)state;
    gt_chat_template t;
    assert_int_equal(gt_chat_template_by_name("mistral-v3", &t), GT_OK);
    char *out = apply(&t, k_conv, N_CONV, true);
    assert_true(same("mistral-v3", out,
                     "[INST] You are a helpful assistant\n\nHello[/INST] Hi there</s>[INST] Who are you[/INST] I am an assistant</s>[INST] Another question[/INST]"));
    free(out);
    assert_int_equal(gt_chat_template_by_name("mistral-v3-tekken", &t), GT_OK);
    out = apply(&t, k_conv, N_CONV, true);
    assert_true(same("mistral-v3-tekken", out,
                     "[INST]You are a helpful assistant\n\nHello[/INST]Hi there</s>[INST]Who are you[/INST]   I am an assistant   </s>[INST]Another question[/INST]"));
    free(out);
    /* Detection markers of those templates. */
    const char *v3 = "{%- if tools is not none and (message == user_messages[-1]) %}{{- \"[AVAILABLE_TOOLS] [\" }}{{- \"[INST] \" + message[\"content\"] + \"[/INST]\" }}";
    const char *tekken = "{{- \"[AVAILABLE_TOOLS][\" }}{{- \"[INST]\" + message[\"content\"] + \"[/INST]\" }}";
    assert_int_equal(gt_chat_detect(v3, strlen(v3)), GT_CHAT_MISTRAL_V3);
    assert_int_equal(gt_chat_detect(tekken, strlen(tekken)), GT_CHAT_MISTRAL_V3_TEKKEN);
}

/* Templates of families we do not format must not be taken for a neighbour. */
static void test_unsupported_families(void **state) {
    (void)state;
    static const char *const k[] = {
        /* Phi-4 */
        "{% for message in messages %}{% if (message['role'] == 'system') %}{{'<|im_start|>system<|im_sep|>' + message['content'] + '<|im_end|>'}}{% endif %}{% endfor %}",
        /* OpenChat */
        "{{ bos_token }}{% for message in messages %}{{ 'GPT4 Correct ' + message['role'].title() + ': ' + message['content'] + '<|end_of_turn|>'}}{% endfor %}",
        /* Command-R */
        "{{ bos_token }}{{ '<|START_OF_TURN_TOKEN|><|SYSTEM_TOKEN|>' + system_message + '<|END_OF_TURN_TOKEN|>' }}{{ '<|START_OF_TURN_TOKEN|><|USER_TOKEN|>' + content.strip() }}",
        /* Monarch */
        "{% for message in messages %}{{bos_token + message['role'] + '\\n' + message['content'] + eos_token + '\\n'}}{% endfor %}",
        /* GLM-Edge */
        "{% for item in messages %}{% if item['role'] == 'system' %}<|system|>\n{{ item['content'] }}{% elif item['role'] == 'user' %}<|user|>\n{{ item['content'] }}{% elif item['role'] == 'assistant' %}<|assistant|>\n{{ item['content'] }}{% endif %}{% endfor %}<|assistant|>",
        "INVALID TEMPLATE",
        "",
    };
    for (size_t i = 0; i < sizeof k / sizeof k[0]; i++) {
        gt_chat_format f = gt_chat_detect(k[i], strlen(k[i]));
        if (f != GT_CHAT_UNKNOWN) fprintf(stderr, "template %zu detected as %s\n", i, gt_chat_format_name(f));
        assert_int_equal(f, GT_CHAT_UNKNOWN);
    }
}

/* ---- real templates of the models Gantry targets ---- */

/* SmolLM2-135M-Instruct's tokenizer_config.json (JSON "\n" is a newline). */
static const char k_smollm2[] =
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

/* Qwen2.5-Instruct. */
static const char k_qwen25[] =
    "{%- if tools %}\n    {{- '<|im_start|>system\\n' }}\n    {%- if messages[0]['role'] == 'system' %}\n        {{- messages[0]['content'] }}\n    {%- else %}\n        {{- 'You are Qwen, created by Alibaba Cloud. You are a helpful assistant.' }}\n    {%- endif %}\n    {{- \"\\n\\n# Tools\\n\\nYou may call one or more functions to assist with the user query.\\n\\nYou are provided with function signatures within <tools></tools> XML tags:\\n<tools>\" }}\n    {%- for tool in tools %}\n        {{- \"\\n\" }}\n        {{- tool | tojson }}\n    {%- endfor %}\n    {{- \"\\n</tools>\\n\\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\\n<tool_call>\\n{\\\"name\\\": <function-name>, \\\"arguments\\\": <args-json-object>}\\n</tool_call><|im_end|>\\n\" }}\n{%- else %}\n    {%- if messages[0]['role'] == 'system' %}\n        {{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}\n    {%- else %}\n        {{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\\n' }}\n    {%- endif %}\n{%- endif %}\n{%- for message in messages %}\n    {%- if (message.role == \"user\") or (message.role == \"system\" and not loop.first) or (message.role == \"assistant\" and not message.tool_calls) %}\n        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}\n    {%- elif message.role == \"assistant\" %}\n        {{- '<|im_start|>' + message.role }}\n        {%- if message.content %}\n            {{- '\\n' + message.content }}\n        {%- endif %}\n        {%- for tool_call in message.tool_calls %}\n            {%- if tool_call.function is defined %}\n                {%- set tool_call = tool_call.function %}\n            {%- endif %}\n            {{- '\\n<tool_call>\\n{\"name\": \"' }}\n            {{- tool_call.name }}\n            {{- '\", \"arguments\": ' }}\n            {{- tool_call.arguments | tojson }}\n            {{- '}\\n</tool_call>' }}\n        {%- endfor %}\n        {{- '<|im_end|>\\n' }}\n    {%- elif message.role == \"tool\" %}\n        {%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != \"tool\") %}\n            {{- '<|im_start|>user' }}\n        {%- endif %}\n        {{- '\\n<tool_response>\\n' }}\n        {{- message.content }}\n        {{- '\\n</tool_response>' }}\n        {%- if loop.last or (messages[loop.index0 + 1].role != \"tool\") %}\n            {{- '<|im_end|>\\n' }}\n        {%- endif %}\n    {%- endif %}\n{%- endfor %}\n{%- if add_generation_prompt %}\n    {{- '<|im_start|>assistant\\n' }}\n{%- endif %}\n";

/* Gemma 3 (gemma-3-*-it). */
static const char k_gemma3[] =
    "{{ bos_token }}\n{%- if messages[0]['role'] == 'system' -%}\n    {%- if messages[0]['content'] is string -%}\n        {%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}\n    {%- else -%}\n        {%- set first_user_prefix = messages[0]['content'][0]['text'] + '\n\n' -%}\n    {%- endif -%}\n    {%- set loop_messages = messages[1:] -%}\n{%- else -%}\n    {%- set first_user_prefix = \"\" -%}\n    {%- set loop_messages = messages -%}\n{%- endif -%}\n{%- for message in loop_messages -%}\n    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}\n        {{ raise_exception(\"Conversation roles must alternate user/assistant/user/assistant/...\") }}\n    {%- endif -%}\n    {%- if (message['role'] == 'assistant') -%}\n        {%- set role = \"model\" -%}\n    {%- else -%}\n        {%- set role = message['role'] -%}\n    {%- endif -%}\n    {{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else \"\") }}\n    {%- if message['content'] is string -%}\n        {{ message['content'] | trim }}\n    {%- elif message['content'] is iterable -%}\n        {%- for item in message['content'] -%}\n            {%- if item['type'] == 'image' -%}\n                {{ '<start_of_image>' }}\n            {%- elif item['type'] == 'text' -%}\n                {{ item['text'] | trim }}\n            {%- endif -%}\n        {%- endfor -%}\n    {%- else -%}\n        {{ raise_exception(\"Invalid content type\") }}\n    {%- endif -%}\n    {{ '<end_of_turn>\n' }}\n{%- endfor -%}\n{%- if add_generation_prompt -%}\n    {{'<start_of_turn>model\n'}}\n{%- endif -%}\n";

/* Llama 3.2-Instruct. */
static const char k_llama32[] =
    "{{- bos_token }}\n{%- if custom_tools is defined %}\n    {%- set tools = custom_tools %}\n{%- endif %}\n{%- if not tools_in_user_message is defined %}\n    {%- set tools_in_user_message = true %}\n{%- endif %}\n{%- if not date_string is defined %}\n    {%- if strftime_now is defined %}\n        {%- set date_string = strftime_now(\"%d %b %Y\") %}\n    {%- else %}\n        {%- set date_string = \"26 Jul 2024\" %}\n    {%- endif %}\n{%- endif %}\n{%- if not tools is defined %}\n    {%- set tools = none %}\n{%- endif %}\n\n{#- This block extracts the system message, so we can slot it into the right place. #}\n{%- if messages[0]['role'] == 'system' %}\n    {%- set system_message = messages[0]['content']|trim %}\n    {%- set messages = messages[1:] %}\n{%- else %}\n    {%- set system_message = \"\" %}\n{%- endif %}\n\n{#- System message #}\n{{- \"<|start_header_id|>system<|end_header_id|>\\n\\n\" }}\n{%- if tools is not none %}\n    {{- \"Environment: ipython\\n\" }}\n{%- endif %}\n{{- \"Cutting Knowledge Date: December 2023\\n\" }}\n{{- \"Today Date: \" + date_string + \"\\n\\n\" }}\n{%- if tools is not none and not tools_in_user_message %}\n    {{- \"You have access to the following functions. To call a function, please respond with JSON for a function call.\" }}\n    {{- 'Respond in the format {\"name\": function name, \"parameters\": dictionary of argument name and its value}.' }}\n    {{- \"Do not use variables.\\n\\n\" }}\n    {%- for t in tools %}\n        {{- t | tojson(indent=4) }}\n        {{- \"\\n\\n\" }}\n    {%- endfor %}\n{%- endif %}\n{{- system_message }}\n{{- \"<|eot_id|>\" }}\n\n{%- for message in messages %}\n    {%- if not (message.role == 'ipython' or message.role == 'tool' or 'tool_calls' in message) %}\n        {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + '<|eot_id|>' }}\n    {%- endif %}\n{%- endfor %}\n{%- if add_generation_prompt %}\n    {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}\n{%- endif %}\n";

/* The four-message conversation of the brief: system, user, assistant, user. */
static const gt_chat_msg k_four[] = {
    {"system", "Be brief."},
    {"user", "What is 2+2?"},
    {"assistant", "4"},
    {"user", "And 3+3?"},
};

static gt_chat_template parse_ok(const char *tmpl, gt_chat_format want) {
    gt_chat_template t;
    gt_status st = gt_chat_template_parse(tmpl, strlen(tmpl), "test", &t);
    if (st != GT_OK) fprintf(stderr, "%s\n", gt_last_error());
    assert_int_equal(st, GT_OK);
    if (t.format != want)
        fprintf(stderr, "detected %s, want %s\n", gt_chat_format_name(t.format), gt_chat_format_name(want));
    assert_int_equal(t.format, want);
    return t;
}

static void check(const gt_chat_template *t, const gt_chat_msg *m, size_t n, bool gen, const char *label,
                  const char *want) {
    char *out = apply(t, m, n, gen);
    int ok = same(label, out, want);
    free(out);
    assert_true(ok);
}

static void test_smollm2(void **state) {
    (void)state;
    gt_chat_template t = parse_ok(k_smollm2, GT_CHAT_CHATML);
    assert_true(t.has_default_system);
    assert_string_equal(t.default_system, "You are a helpful AI assistant named SmolLM, trained by Hugging Face");
    check(&t, k_four, 4, true, "smollm2 with system",
          "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n4<|im_end|>\n<|im_start|>user\nAnd 3+3?<|im_end|>\n<|im_start|>assistant\n");
    check(&t, k_four, 4, false, "smollm2 no generation prompt",
          "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n4<|im_end|>\n<|im_start|>user\nAnd 3+3?<|im_end|>\n");
    check(&t, k_four + 1, 1, true, "smollm2 default system",
          "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n");
    /* The same template with the Jinja escape "\\n" instead of a newline. */
    static const char escaped[] =
        "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";
    gt_chat_template e = parse_ok(escaped, GT_CHAT_CHATML);
    assert_string_equal(e.default_system, t.default_system);
}

static void test_qwen25(void **state) {
    (void)state;
    gt_chat_template t = parse_ok(k_qwen25, GT_CHAT_CHATML);
    assert_true(t.has_default_system);
    assert_string_equal(t.default_system, "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.");
    check(&t, k_four + 1, 3, true, "qwen2.5 default system",
          "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n4<|im_end|>\n<|im_start|>user\nAnd 3+3?<|im_end|>\n<|im_start|>assistant\n");
    check(&t, k_four, 2, false, "qwen2.5 given system",
          "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n");
    /* Contents are written untrimmed, as the template does. */
    const gt_chat_msg m[] = {{"user", "  hi  "}};
    check(&t, m, 1, true, "qwen2.5 untrimmed",
          "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n<|im_start|>user\n  hi  <|im_end|>\n<|im_start|>assistant\n");
    /* A ChatML template with no default adds none. */
    gt_chat_template plain = parse_ok(k_vecs[0].tmpl, GT_CHAT_CHATML);
    assert_false(plain.has_default_system);
    check(&plain, m, 1, true, "chatml no default", "<|im_start|>user\n  hi  <|im_end|>\n<|im_start|>assistant\n");
}

static void test_gemma3(void **state) {
    (void)state;
    gt_chat_template t = parse_ok(k_gemma3, GT_CHAT_GEMMA);
    check(&t, k_four, 4, true, "gemma3",
          "<start_of_turn>user\nBe brief.\n\nWhat is 2+2?<end_of_turn>\n<start_of_turn>model\n4<end_of_turn>\n<start_of_turn>user\nAnd 3+3?<end_of_turn>\n<start_of_turn>model\n");
    check(&t, k_four, 4, false, "gemma3 no generation prompt",
          "<start_of_turn>user\nBe brief.\n\nWhat is 2+2?<end_of_turn>\n<start_of_turn>model\n4<end_of_turn>\n<start_of_turn>user\nAnd 3+3?<end_of_turn>\n");
    /* The system text is not trimmed (first_user_prefix), the contents are. */
    const gt_chat_msg m[] = {{"system", " Sys "}, {"user", "\n hi \t"}};
    check(&t, m, 2, true, "gemma3 trim", "<start_of_turn>user\n Sys \n\nhi<end_of_turn>\n<start_of_turn>model\n");
    /* A system message that no user message follows cannot be placed. */
    const gt_chat_msg bad[] = {{"user", "a"}, {"system", "b"}, {"assistant", "c"}};
    char *out = (char *)1;
    assert_int_equal(gt_chat_apply(&t, bad, 3, true, &out, NULL), GT_ERR_INVALID_ARG);
    assert_null(out);
    assert_non_null(strstr(gt_last_error(), "message 1"));
    assert_int_equal(gt_chat_apply(&t, bad, 2, true, &out, NULL), GT_ERR_INVALID_ARG);
}

static void test_llama3(void **state) {
    (void)state;
    gt_chat_template t = parse_ok(k_vecs[8].tmpl, GT_CHAT_LLAMA3);
    check(&t, k_four, 4, false, "llama3 no generation prompt",
          "<|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nWhat is 2+2?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n4<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nAnd 3+3?<|eot_id|>");

    gt_chat_template t32 = parse_ok(k_llama32, GT_CHAT_LLAMA31);
    assert_string_equal(t32.date_string, "26 Jul 2024");
    assert_true(t32.date_today); /* the template calls strftime_now */
    t32.date_today = false;
    check(&t32, k_four, 4, true, "llama3.2",
          "<|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\nBe brief.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nWhat is 2+2?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n4<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nAnd 3+3?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n");
    check(&t32, k_four + 1, 1, true, "llama3.2 no system",
          "<|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nWhat is 2+2?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n");
    /* With the current date: "DD Mon YYYY" in place of the fixed one. */
    t32.date_today = true;
    char *out = apply(&t32, k_four + 1, 1, true);
    const char *d = strstr(out, "Today Date: ");
    assert_non_null(d);
    d += strlen("Today Date: ");
    assert_true(d[0] >= '0' && d[0] <= '3' && d[1] >= '0' && d[1] <= '9' && d[2] == ' ');
    assert_true(d[6] == ' ' && d[7] == '2' && d[11] == '\n');
    free(out);
    /* Llama 3.1's template has only the fixed date. */
    static const char t31[] = "{%- if not date_string is defined %}\n    {%- set date_string = \"26 Jul 2024\" %}\n{%- endif %}{{- \"<|start_header_id|>system<|end_header_id|>\\n\\n\" }}{{- \"Cutting Knowledge Date: December 2023\\n\" }}";
    gt_chat_template t1 = parse_ok(t31, GT_CHAT_LLAMA31);
    assert_false(t1.date_today);
    assert_string_equal(t1.date_string, "26 Jul 2024");
}

static void test_phi3_from_gguf(void **state) {
    (void)state;
    char path[4096];
    snprintf(path, sizeof path, "%s/vocab/ggml-vocab-phi-3.gguf", gt_test_shared_dir());
    gt_gguf *g = NULL;
    if (gt_gguf_open(path, &g) != GT_OK) {
        fprintf(stderr, "skipping: %s\n", gt_last_error());
        skip();
    }
    gt_chat_template t;
    assert_int_equal(gt_chat_template_from_gguf(g, &t), GT_OK);
    assert_int_equal(t.format, GT_CHAT_PHI3);
    gt_chat_format f;
    assert_int_equal(gt_chat_format_from_gguf(g, &f), GT_OK);
    assert_int_equal(f, GT_CHAT_PHI3);
    check(&t, k_four + 1, 3, true, "phi3",
          "<|user|>\nWhat is 2+2?<|end|>\n<|assistant|>\n4<|end|>\n<|user|>\nAnd 3+3?<|end|>\n<|assistant|>\n");
    gt_gguf_close(g);

    /* A vocabulary without a template. */
    snprintf(path, sizeof path, "%s/vocab/ggml-vocab-gpt-2.gguf", gt_test_shared_dir());
    assert_int_equal(gt_gguf_open(path, &g), GT_OK);
    assert_int_equal(gt_chat_template_from_gguf(g, &t), GT_ERR_NOT_FOUND);
    assert_non_null(strstr(gt_last_error(), "ggml-vocab-gpt-2.gguf"));
    gt_gguf_close(g);
}

/* ---- errors, names, stop strings ---- */

static void test_unknown_template_sentence(void **state) {
    (void)state;
    static const char tmpl[] =
        "{% for m in messages %}{{ '<<turn>>' + m['role'] + ':' + m['content'] }}\n{% endfor %}{{ 'more text to pass sixty' }}";
    gt_chat_template t;
    assert_int_equal(gt_chat_template_parse(tmpl, strlen(tmpl), "model.gguf", &t), GT_ERR_UNSUPPORTED);
    const char *e = gt_last_error();
    fprintf(stderr, "sentence: %s\n", e);
    assert_non_null(strstr(e, "model.gguf: chat template not recognised (starts '{% for m in messages %}"));
    assert_non_null(strstr(e, "...'"));
    assert_non_null(strstr(e, "send raw text"));
    assert_null(strchr(e, '\n'));
}

static void test_bad_role(void **state) {
    (void)state;
    gt_chat_template t;
    gt_chat_template_init(&t, GT_CHAT_CHATML);
    const gt_chat_msg m[] = {{"user", "a"}, {"assistant", "b"}, {"tool", "c"}};
    char *out = (char *)1;
    size_t len = 7;
    assert_int_equal(gt_chat_apply(&t, m, 3, true, &out, &len), GT_ERR_INVALID_ARG);
    assert_null(out);
    assert_int_equal(len, 0);
    fprintf(stderr, "sentence: %s\n", gt_last_error());
    assert_non_null(strstr(gt_last_error(), "message 2 has role 'tool'"));
    const gt_chat_msg nul[] = {{"user", NULL}};
    assert_int_equal(gt_chat_apply(&t, nul, 1, true, &out, NULL), GT_ERR_INVALID_ARG);
    const gt_chat_msg norole[] = {{NULL, "x"}};
    assert_int_equal(gt_chat_apply(&t, norole, 1, true, &out, NULL), GT_ERR_INVALID_ARG);
    gt_chat_template_init(&t, GT_CHAT_UNKNOWN);
    assert_int_equal(gt_chat_apply(&t, m, 2, true, &out, NULL), GT_ERR_INVALID_ARG);
}

static void test_names_and_override(void **state) {
    (void)state;
    for (int f = GT_CHAT_UNKNOWN + 1; f < GT_CHAT_FORMAT_COUNT; f++) {
        const char *name = gt_chat_format_name((gt_chat_format)f);
        assert_int_equal(gt_chat_format_by_name(name), f);
        /* The name alone is accepted as a template text. */
        assert_int_equal(gt_chat_detect(name, strlen(name)), f);
        gt_chat_template t;
        assert_int_equal(gt_chat_template_by_name(name, &t), GT_OK);
        assert_int_equal(t.format, f);
        assert_false(t.has_default_system);
        /* Every family formats the conversation, and every stop list is
         * non-empty and found in the formatted text when an assistant turn
         * is closed there (Llama 2 / Mistral close with </s>). */
        char *out = apply(&t, k_conv, N_CONV, true);
        const char *const *stops = gt_chat_stop_strings((gt_chat_format)f);
        assert_non_null(stops[0]);
        int found = 0;
        for (size_t i = 0; stops[i]; i++) found |= strstr(out, stops[i]) != NULL;
        if (!found) fprintf(stderr, "%s: no stop string in \"%s\"\n", name, out);
        assert_true(found);
        free(out);
    }
    assert_string_equal(gt_chat_format_name(GT_CHAT_UNKNOWN), "unknown");
    assert_string_equal(gt_chat_format_name((gt_chat_format)999), "unknown");
    assert_null(gt_chat_stop_strings(GT_CHAT_UNKNOWN)[0]);
    assert_string_equal(gt_chat_stop_strings(GT_CHAT_CHATML)[0], "<|im_end|>");
    assert_string_equal(gt_chat_stop_strings(GT_CHAT_GEMMA)[0], "<end_of_turn>");
    assert_string_equal(gt_chat_stop_strings(GT_CHAT_LLAMA3)[0], "<|eot_id|>");
    gt_chat_template t;
    assert_int_equal(gt_chat_template_by_name("chatml2", &t), GT_ERR_INVALID_ARG);
    assert_non_null(strstr(gt_last_error(), "'chatml2'"));
    assert_non_null(strstr(gt_last_error(), "llama3.1"));
    assert_int_equal(gt_chat_format_by_name(NULL), GT_CHAT_UNKNOWN);
}

static void test_edge_cases(void **state) {
    (void)state;
    gt_chat_template t;
    /* No messages: only the generation prompt (and a default system). */
    gt_chat_template_init(&t, GT_CHAT_CHATML);
    check(&t, NULL, 0, true, "empty chatml", "<|im_start|>assistant\n");
    char *out = NULL;
    size_t len = 9;
    assert_int_equal(gt_chat_apply(&t, NULL, 0, false, &out, &len), GT_OK);
    assert_string_equal(out, "");
    assert_int_equal(len, 0);
    free(out);
    /* A default system message that is not a plain literal is not taken. */
    static const char expr[] = "{{ '<|im_start|>system\\n' + sys + '<|im_end|>\\n' }}";
    gt_chat_template e = parse_ok(expr, GT_CHAT_CHATML);
    assert_false(e.has_default_system);
    /* Escapes inside the literal are unescaped. */
    static const char esc[] = "{{ '<|im_start|>system\\nIt\\'s a \\\"test\\\"\\\\ line1\\nline2<|im_end|>\\n' }}";
    e = parse_ok(esc, GT_CHAT_CHATML);
    assert_true(e.has_default_system);
    assert_string_equal(e.default_system, "It's a \"test\"\\ line1\nline2");
    /* An over-long default system message is refused with the limit named. */
    size_t big = GT_CHAT_MAX_DEFAULT_SYSTEM + 10;
    char *tmpl = malloc(big + 64);
    assert_non_null(tmpl);
    int w = sprintf(tmpl, "{{ '<|im_start|>system\\n");
    memset(tmpl + w, 'x', big);
    strcpy(tmpl + w + big, "<|im_end|>\\n' }}");
    assert_int_equal(gt_chat_template_parse(tmpl, strlen(tmpl), "big.gguf", &e), GT_ERR_RANGE);
    assert_non_null(strstr(gt_last_error(), "1023-byte limit"));
    free(tmpl);
    /* Detection reads only len bytes (no NUL needed). */
    static const char cut[] = "<|im_start|>";
    assert_int_equal(gt_chat_detect(cut, 5), GT_CHAT_UNKNOWN);
    assert_int_equal(gt_chat_detect(NULL, 0), GT_CHAT_UNKNOWN);
    /* DeepSeek V3: system messages gathered at the front. */
    gt_chat_template_init(&t, GT_CHAT_DEEPSEEK3);
    check(&t, k_four, 4, true, "deepseek3",
          "Be brief.<\xef\xbd\x9cUser\xef\xbd\x9c>What is 2+2?<\xef\xbd\x9c" "Assistant\xef\xbd\x9c>4<\xef\xbd\x9c" "end\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c><\xef\xbd\x9cUser\xef\xbd\x9c>And 3+3?<\xef\xbd\x9c" "Assistant\xef\xbd\x9c>");
    static const char ds3[] = "{{ bos_token }}{{ ns.system_prompt }}{{'<\xef\xbd\x9cUser\xef\xbd\x9c>' + message['content']}}{{'<\xef\xbd\x9c" "Assistant\xef\xbd\x9c>' + content + '<\xef\xbd\x9c" "end\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>'}}";
    assert_int_equal(gt_chat_detect(ds3, strlen(ds3)), GT_CHAT_DEEPSEEK3);
    /* Zephyr: <|role|>\n...<|endoftext|>\n. */
    /* (llama.cpp's rule: <|user|> and <|endoftext|>, and no literal
     * <|assistant|>, which with <|user|> marks Falcon 3 / GLM-Edge.) */
    static const char zephyr[] = "{% for message in messages %}{% if message['role'] == 'user' %}{{ '<|user|>\\n' + message['content'] + '<|endoftext|>\\n' }}{% else %}{{ '<|' + message['role'] + '|>\\n' + message['content'] + '<|endoftext|>\\n' }}{% endif %}{% endfor %}";
    gt_chat_template z = parse_ok(zephyr, GT_CHAT_ZEPHYR);
    check(&z, k_four + 1, 2, true, "zephyr",
          "<|user|>\nWhat is 2+2?<|endoftext|>\n<|assistant|>\n4<|endoftext|>\n<|assistant|>\n");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_llama_cpp_vectors),
        cmocka_unit_test(test_mistral_v3_by_name),
        cmocka_unit_test(test_unsupported_families),
        cmocka_unit_test(test_smollm2),
        cmocka_unit_test(test_qwen25),
        cmocka_unit_test(test_gemma3),
        cmocka_unit_test(test_llama3),
        cmocka_unit_test(test_phi3_from_gguf),
        cmocka_unit_test(test_unknown_template_sentence),
        cmocka_unit_test(test_bad_role),
        cmocka_unit_test(test_names_and_override),
        cmocka_unit_test(test_edge_cases),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
