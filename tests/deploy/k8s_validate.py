#!/usr/bin/env python3
"""Offline validation of Kubernetes manifests (deploy/k8s), without a cluster.

No API server runs on the project's machines, so the manifests are checked
against the schemas in tests/data/k8s-schemas/ (README.md there says where
they come from):

  1. every file parses as YAML (one or more documents);
  2. every document against the schema of its apiVersion and kind, with
     jsonschema's Draft 4 validator: the core kinds' standalone schemas are
     strict (unknown fields rejected) and self-contained (no $ref); the
     MPIJob against the CRD's openAPIV3Schema made strict the same way
     (every object schema that lists properties and neither
     additionalProperties nor x-kubernetes-preserve-unknown-fields gets
     additionalProperties: false, which is what the API server's strict
     field validation does), and each MPIJob pod template also against the
     core PodTemplateSpec schema (the CRD leaves template metadata loose);
  3. the MPI Operator's rules that no schema states: only Launcher and
     Worker replica specs, exactly one launcher replica, at least one
     worker, restartPolicy Never or OnFailure, cleanPodPolicy
     None/Running/All, slotsPerWorker equal to the GPUs of each pod that
     holds ranks, Open MPI (Gantry's image carries Open MPI);
  4. checks across the documents of one deployment (a "set"): the client
     Service selects exactly the pod that runs rank 0, as the operator or
     the StatefulSet controller labels it; workload selectors match their
     templates; every Service port and probe
     port is a declared container port; the HTTP probes ask /health on
     GANTRY_HTTP_PORT; every image is the one deploy/docker/Dockerfile
     builds; referenced ConfigMaps and Secrets exist; GANTRY_TP x GANTRY_PP
     equals the GPUs of the rank pods; NCCL's /dev/shm and the read-only
     model volume are mounted; the grace period outlasts the drain.

Every error is one sentence that names the file, the object and the field
("deploy/k8s/mpijob/mpijob.yaml: MPIJob gantry-mpijob: field
spec.slotsPerWorker: ...").

  k8s_validate.py FILE...   validate the files as one set; exit 1 on errors
"""
import functools
import json
import os
import re
import sys

try:
    import jsonschema
    import yaml
except ImportError as e:  # Debian: python3-jsonschema, python3-yaml (scripts/setup.sh)
    print("skip: %s (install python3-jsonschema and python3-yaml)" % e)
    sys.exit(77)

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.environ.get("GANTRY_SOURCE_DIR", os.path.dirname(os.path.dirname(HERE)))
SCHEMA_DIR = os.path.join(SOURCE, "tests", "data", "k8s-schemas")
DOCKERFILE = os.path.join(SOURCE, "deploy", "docker", "Dockerfile")

CORE_SCHEMAS = {
    ("v1", "Service"): "service-v1.json",
    ("v1", "ConfigMap"): "configmap-v1.json",
    ("v1", "Secret"): "secret-v1.json",
    ("apps/v1", "StatefulSet"): "statefulset-apps-v1.json",
    ("apps/v1", "Deployment"): "deployment-apps-v1.json",
    ("batch/v1", "Job"): "job-batch-v1.json",
}
MPIJOB = ("kubeflow.org/v2beta1", "MPIJob")
GPU = "nvidia.com/gpu"
# Labels the MPI Operator (v2beta1) puts on the pods it makes.
OP_NAME, OP_JOB, OP_ROLE, OP_INDEX = ("training.kubeflow.org/operator-name",
                                      "training.kubeflow.org/job-name",
                                      "training.kubeflow.org/job-role",
                                      "training.kubeflow.org/replica-index")


# ---- schemas ---------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def core_schema(fname):
    with open(os.path.join(SCHEMA_DIR, fname)) as f:
        return json.load(f)


def strictify(s):
    """The CRD schema with unknown fields rejected (see the module comment)."""
    if isinstance(s, dict):
        s = {k: strictify(v) for k, v in s.items()}
        if ("properties" in s and "additionalProperties" not in s
                and not s.get("x-kubernetes-preserve-unknown-fields")):
            s["additionalProperties"] = False
        return s
    if isinstance(s, list):
        return [strictify(v) for v in s]
    return s


@functools.lru_cache(maxsize=None)
def mpijob_schema():
    with open(os.path.join(SCHEMA_DIR, "kubeflow.org_mpijobs.yaml")) as f:
        crd = yaml.safe_load(f)
    for v in crd["spec"]["versions"]:
        if v["name"] == "v2beta1":
            return strictify(v["schema"]["openAPIV3Schema"])
    raise RuntimeError("kubeflow.org_mpijobs.yaml has no v2beta1 version")


@functools.lru_cache(maxsize=None)
def validator(key):
    if key == MPIJOB:
        return jsonschema.Draft4Validator(mpijob_schema())
    if key == "PodTemplateSpec":
        sts = core_schema(CORE_SCHEMAS[("apps/v1", "StatefulSet")])
        return jsonschema.Draft4Validator(sts["properties"]["spec"]["properties"]["template"])
    return jsonschema.Draft4Validator(core_schema(CORE_SCHEMAS[key]))


def field(parts):
    out = ""
    for p in parts:
        out += "[%d]" % p if isinstance(p, int) else ("." if out else "") + str(p)
    return out or "(top level)"


def schema_messages(v, obj, prefix=()):
    """(field, sentence) for every schema error, the unknown field named."""
    out = []
    for e in sorted(v.iter_errors(obj), key=lambda e: [str(p) for p in e.absolute_path]):
        path = list(prefix) + list(e.absolute_path)
        if e.validator == "additionalProperties" and isinstance(e.instance, dict):
            known = set(e.schema.get("properties", {}))
            pats = list(e.schema.get("patternProperties", {}))
            for k in sorted(e.instance):
                if k not in known and not any(re.search(p, k) for p in pats):
                    out.append((field(path + [k]), "is not a known field here"))
            continue
        out.append((field(path), e.message.split("\n")[0][:200]))
    return out


# ---- documents -------------------------------------------------------------

class Doc:
    def __init__(self, path, index, obj):
        self.path, self.index, self.obj = path, index, obj
        def text(v):
            return v if isinstance(v, str) else None
        self.api, self.kind = text(obj.get("apiVersion")), text(obj.get("kind"))
        meta = obj.get("metadata")
        self.name = text(meta.get("name")) if isinstance(meta, dict) else None

    def where(self):
        return "%s: %s %s" % (os.path.relpath(self.path, SOURCE) if self.path.startswith(SOURCE)
                              else self.path, self.kind or "?", self.name or "(no name)")


def load(paths, errors):
    docs = []
    for p in paths:
        try:
            with open(p) as f:
                objs = list(yaml.safe_load_all(f))
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            errors.append("%s: the YAML does not parse%s: %s" % (
                p, " at line %d" % (mark.line + 1) if mark else "",
                getattr(e, "problem", None) or e))
            continue
        for i, o in enumerate(x for x in objs if x is not None):
            if not isinstance(o, dict):
                errors.append("%s: document %d is a %s, not a Kubernetes object" % (p, i + 1, type(o).__name__))
                continue
            docs.append(Doc(p, i, o))
    return docs


def err(errors, doc, fld, sentence):
    errors.append("%s: field %s: %s" % (doc.where(), fld, sentence))


def check_schema(doc, errors):
    """Appends the schema errors; returns True when there were none."""
    key = (doc.api, doc.kind)
    if key != MPIJOB and key not in CORE_SCHEMAS:
        err(errors, doc, "apiVersion/kind", "no schema for apiVersion '%s' kind '%s' (known: %s)" % (
            doc.api, doc.kind, ", ".join(sorted("%s %s" % k for k in list(CORE_SCHEMAS) + [MPIJOB]))))
        return False
    n = len(errors)
    for fld, msg in schema_messages(validator(key), doc.obj):
        err(errors, doc, fld, msg)
    if key == MPIJOB:
        specs = (doc.obj.get("spec") or {}).get("mpiReplicaSpecs") or {}
        if isinstance(specs, dict):
            for rtype, rs in specs.items():
                if isinstance(rs, dict) and "template" in rs:
                    for fld, msg in schema_messages(validator("PodTemplateSpec"), rs["template"],
                                                    ("spec", "mpiReplicaSpecs", rtype, "template")):
                        err(errors, doc, fld, msg)
    return len(errors) == n


# ---- the MPI Operator's rules --------------------------------------------

def quantity(v):
    """An integer resource quantity ("8" or 8); None when absent or not one."""
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return v
    if isinstance(v, str) and re.fullmatch(r"[0-9]+", v):
        return int(v)
    return None


def pod_gpus(spec):
    """GPUs a pod spec asks for (sum over its containers), and (field, sentence) problems."""
    total, problems = 0, []
    for i, c in enumerate(spec.get("containers") or []):
        res = c.get("resources") or {}
        lim = (res.get("limits") or {}).get(GPU)
        req = (res.get("requests") or {}).get(GPU)
        if lim is None and req is None:
            continue
        f = "spec.containers[%d].resources.limits.%s" % (i, GPU)
        if quantity(lim) is None:
            problems.append((f, "GPUs are set as limits, in whole numbers (found %r)" % (lim,)))
            continue
        if req is not None and quantity(req) != quantity(lim):
            problems.append(("spec.containers[%d].resources.requests.%s" % (i, GPU),
                             "GPU requests (%r) must equal limits (%r)" % (req, lim)))
        total += quantity(lim)
    return total, problems


def check_mpijob(doc, errors):
    spec = doc.obj.get("spec") or {}
    specs = spec.get("mpiReplicaSpecs") or {}
    if not isinstance(specs, dict):
        return
    for k in specs:
        if k not in ("Launcher", "Worker"):
            err(errors, doc, "spec.mpiReplicaSpecs.%s" % k, "the operator knows only Launcher and Worker replicas")
    if "Launcher" not in specs:
        err(errors, doc, "spec.mpiReplicaSpecs.Launcher", "an MPIJob needs a Launcher replica spec")
    for rtype, rs in specs.items():
        if not isinstance(rs, dict):
            continue
        f = "spec.mpiReplicaSpecs.%s" % rtype
        n = rs.get("replicas", 1)
        if rtype == "Launcher" and n != 1:
            err(errors, doc, f + ".replicas", "the launcher must have exactly 1 replica, not %s" % n)
        if rtype == "Worker" and not (isinstance(n, int) and n >= 1):
            err(errors, doc, f + ".replicas", "Gantry needs at least 1 worker replica, not %s" % n)
        rp = rs.get("restartPolicy")
        if rp is not None and rp not in ("Never", "OnFailure"):
            err(errors, doc, f + ".restartPolicy", "must be Never or OnFailure, not '%s'" % rp)
    cpp = (spec.get("runPolicy") or {}).get("cleanPodPolicy")
    if cpp is not None and cpp not in ("None", "Running", "All"):
        err(errors, doc, "spec.runPolicy.cleanPodPolicy", "must be None, Running or All, not '%s'" % cpp)
    impl = spec.get("mpiImplementation", "OpenMPI")
    if impl != "OpenMPI":
        err(errors, doc, "spec.mpiImplementation", "Gantry's image runs Open MPI, not '%s'" % impl)
    slots = spec.get("slotsPerWorker", 1)
    holders = ["Worker"] + (["Launcher"] if spec.get("runLauncherAsWorker") else [])
    for rtype in holders:
        rs = specs.get(rtype)
        if not isinstance(rs, dict):
            continue
        gpus, problems = pod_gpus((rs.get("template") or {}).get("spec") or {})
        for fld, msg in problems:
            err(errors, doc, "spec.mpiReplicaSpecs.%s.template.%s" % (rtype, fld), msg)
        if gpus != slots:
            err(errors, doc, "spec.slotsPerWorker", "%s slots per pod, but each %s pod asks for %d GPUs "
                "(one rank per GPU: they must be equal)" % (slots, rtype.lower(), gpus))


# ---- the pods a set makes --------------------------------------------------

class Pod:
    """One pod a workload makes, with the labels its controller adds."""

    def __init__(self, doc, name, fprefix, template, extra_labels, rank0=False):
        self.doc, self.name, self.fprefix = doc, name, fprefix
        self.template = template or {}
        self.spec = self.template.get("spec") or {}
        self.labels = dict((self.template.get("metadata") or {}).get("labels") or {})
        self.labels.update(extra_labels)
        self.rank0 = rank0
        main = (self.spec.get("containers") or [{}])[0]
        cmd = " ".join(str(x) for x in (main.get("command") or []) + (main.get("args") or []))
        self.launches = "gantry-launch" in cmd
        self.holds_ranks = self.launches or "gantry-sshd" in cmd
        self.gpus = pod_gpus(self.spec)[0]


def pods_of(docs):
    pods = []
    for d in docs:
        spec = d.obj.get("spec") or {}
        if d.kind in ("StatefulSet", "Deployment"):
            n = spec.get("replicas", 1)
            for i in range(n if isinstance(n, int) else 1):
                extra = {}
                if d.kind == "StatefulSet":
                    extra = {"statefulset.kubernetes.io/pod-name": "%s-%d" % (d.name, i),
                             "apps.kubernetes.io/pod-index": str(i)}
                p = Pod(d, "%s-%d" % (d.name, i), "spec.template", spec.get("template"), extra)
                p.rank0 = p.launches and i == 0
                pods.append(p)
        elif d.kind == "Job":
            pods.append(Pod(d, d.name, "spec.template", spec.get("template"),
                            {"batch.kubernetes.io/job-name": d.name, "job-name": d.name}))
        elif d.kind == "MPIJob":
            specs = spec.get("mpiReplicaSpecs") or {}
            as_worker = bool(spec.get("runLauncherAsWorker"))
            base = {OP_NAME: "mpi-operator", OP_JOB: d.name}
            if isinstance(specs.get("Launcher"), dict):
                p = Pod(d, d.name + "-launcher", "spec.mpiReplicaSpecs.Launcher.template",
                        specs["Launcher"].get("template"), dict(base, **{OP_ROLE: "launcher"}), rank0=as_worker)
                p.holds_ranks = as_worker
                p.launches = True
                pods.append(p)
            w = specs.get("Worker")
            if isinstance(w, dict):
                n = w.get("replicas", 1)
                for i in range(n if isinstance(n, int) else 1):
                    p = Pod(d, "%s-worker-%d" % (d.name, i), "spec.mpiReplicaSpecs.Worker.template",
                            w.get("template"), dict(base, **{OP_ROLE: "worker", OP_INDEX: str(i)}),
                            rank0=(not as_worker and i == 0))
                    p.holds_ranks = True
                    pods.append(p)
    return pods


def selects(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def container_ports(c):
    names, numbers = set(), set()
    for p in c.get("ports") or []:
        if "name" in p:
            names.add(p["name"])
        numbers.add(p.get("containerPort"))
    return names, numbers


def port_declared(port, c):
    names, numbers = container_ports(c)
    return port in names if isinstance(port, str) else port in numbers


def port_number(port, c):
    if isinstance(port, int):
        return port
    for p in c.get("ports") or []:
        if p.get("name") == port:
            return p.get("containerPort")
    return None


@functools.lru_cache(maxsize=None)
def dockerfile_image():
    """(title, version) of the image deploy/docker/Dockerfile builds, from its LABELs."""
    with open(DOCKERFILE) as f:
        text = f.read()
    t = re.search(r'org\.opencontainers\.image\.title="([^"]+)"', text)
    v = re.search(r'org\.opencontainers\.image\.version="([^"]+)"', text)
    if not (t and v):
        raise RuntimeError("%s has no image title and version LABELs" % DOCKERFILE)
    return t.group(1), v.group(1)


def env_of(c, values):
    """A container's environment: its envFrom ConfigMaps, then env."""
    env = {}
    for ef in c.get("envFrom") or []:
        name = (ef.get("configMapRef") or {}).get("name")
        if name in values:
            env.update(values[name])
    for e in c.get("env") or []:
        if "value" in e:
            env[e["name"]] = e["value"]
    return env


def check_set(docs, errors):
    byname = {(d.kind, d.name): d for d in docs}
    configmaps = {d.name: (d.obj.get("data") or {}) for d in docs if d.kind == "ConfigMap"}
    secrets = {d.name for d in docs if d.kind == "Secret"}
    services = [d for d in docs if d.kind == "Service"]
    pods = pods_of(docs)
    title, version = dockerfile_image()
    mpijobs = {d.name for d in docs if d.kind == "MPIJob"}

    # Per pod: images, references, probes, volumes.
    for p in pods:
        d, fp, spec = p.doc, p.fprefix, p.spec
        op_made = {d.name + "-ssh", d.name + "-config"} if d.kind == "MPIJob" else set()
        for group in ("initContainers", "containers"):
            for i, c in enumerate(spec.get(group) or []):
                cf = "%s.spec.%s[%d]" % (fp, group, i)
                img = c.get("image", "")
                m = re.fullmatch(r"(?:[^:/]+(?::[0-9]+)?/)?(?:[^:]+/)?([^/:]+):([^/:@]+)", img)
                if not (m and m.group(1) == title and m.group(2) == version):
                    err(errors, d, cf + ".image", "'%s' is not the image deploy/docker/Dockerfile builds "
                        "(REGISTRY/%s:%s)" % (img, title, version))
                for j, ef in enumerate(c.get("envFrom") or []):
                    ref = (ef.get("configMapRef") or {}).get("name")
                    if ref is not None and ref not in configmaps:
                        err(errors, d, "%s.envFrom[%d].configMapRef.name" % (cf, j),
                            "no ConfigMap '%s' among the manifests" % ref)
                for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                    pr = c.get(probe)
                    if not isinstance(pr, dict):
                        continue
                    for how in ("httpGet", "tcpSocket", "grpc"):
                        if isinstance(pr.get(how), dict) and "port" in pr[how]:
                            port = pr[how]["port"]
                            if not port_declared(port, c):
                                err(errors, d, "%s.%s.%s.port" % (cf, probe, how),
                                    "%r is not a declared containerPort of container '%s'" % (port, c.get("name")))
        for j, v in enumerate(spec.get("volumes") or []):
            sec = (v.get("secret") or {}).get("secretName")
            if sec is not None and sec not in secrets and sec not in op_made:
                err(errors, d, "%s.spec.volumes[%d].secret.secretName" % (fp, j),
                    "no Secret '%s' among the manifests" % sec)
            pvc = v.get("persistentVolumeClaim")
            if pvc is not None and not pvc.get("readOnly"):
                err(errors, d, "%s.spec.volumes[%d].persistentVolumeClaim.readOnly" % (fp, j),
                    "the model volume is shared by every pod and must be mounted read-only")

    rank_pods = [p for p in pods if p.holds_ranks]
    rank0 = [p for p in pods if p.rank0]
    if rank_pods and len(rank0) != 1:
        errors.append("%s: the manifests hold %d pods that run rank 0 (%s); a deployment needs exactly one"
                      % (rank_pods[0].doc.where(), len(rank0), ", ".join(p.name for p in rank0) or "none"))

    # The rank pods: GPUs, /dev/shm, models, drain window, the values.
    for p in rank_pods:
        d, fp, spec = p.doc, p.fprefix, p.spec
        c = (spec.get("containers") or [{}])[0]
        vols = {v.get("name"): v for v in spec.get("volumes") or []}
        mounts = {m.get("mountPath"): m for m in c.get("volumeMounts") or []}
        shm = mounts.get("/dev/shm")
        if not shm or ((vols.get(shm.get("name")) or {}).get("emptyDir") or {}).get("medium") != "Memory":
            err(errors, d, fp + ".spec.containers[0].volumeMounts",
                "pod %s needs /dev/shm from an emptyDir with medium Memory (NCCL's shared memory)" % p.name)
        models = mounts.get("/models")
        if not models or not models.get("readOnly") or "persistentVolumeClaim" not in (vols.get(models.get("name")) or {}):
            err(errors, d, fp + ".spec.containers[0].volumeMounts",
                "pod %s needs the model PersistentVolumeClaim mounted read-only at /models" % p.name)
        if p.gpus < 1:
            err(errors, d, fp + ".spec.containers[0].resources.limits.%s" % GPU,
                "pod %s holds ranks but asks for no GPU" % p.name)

    if rank0:
        r0 = rank0[0]
        c0 = (r0.spec.get("containers") or [{}])[0]
        env = env_of(c0, configmaps)
        refs = [(ef.get("configMapRef") or {}).get("name") for ef in c0.get("envFrom") or []]
        vname = next((r for r in refs if r), None)
        vdoc = byname.get(("ConfigMap", vname)) if vname else None

        def verr(key, sentence):
            if vdoc:
                err(errors, vdoc, "data." + key, sentence)
            else:
                err(errors, r0.doc, r0.fprefix + ".spec.containers[0].envFrom", sentence)

        def ival(key, default):
            v = env.get(key, default)
            try:
                return int(v)
            except (TypeError, ValueError):
                verr(key, "'%s' is not a whole number" % v)
                return None

        tp, pp, ep = ival("GANTRY_TP", None), ival("GANTRY_PP", "1"), ival("GANTRY_EP", "1")
        total = sum(p.gpus for p in rank_pods)
        if tp and pp and tp * pp != total:
            verr("GANTRY_TP", "tp %d x pp %d is %d ranks, but the pods that hold ranks (%s) ask for %d GPUs"
                 % (tp, pp, tp * pp, ", ".join(p.name for p in rank_pods), total))
        if tp and ep and tp % ep:
            verr("GANTRY_EP", "ep %d does not divide tp %d" % (ep, tp))
        gpp = ival("GANTRY_GPUS_PER_POD", str(r0.gpus))
        for p in rank_pods:
            if gpp is not None and p.gpus != gpp:
                verr("GANTRY_GPUS_PER_POD", "%d GPUs per pod, but pod %s asks for %d" % (gpp, p.name, p.gpus))
        for key, pname, default in (("GANTRY_HTTP_PORT", "http", "8080"), ("GANTRY_PORT", "rpc", "7733")):
            want, have = ival(key, default), port_number(pname, c0)
            if want != have:
                verr(key, "the server listens on %s, but rank 0's container declares port '%s' as %s"
                     % (want, pname, have))
        for probe in ("readinessProbe", "livenessProbe"):
            hg = (c0.get(probe) or {}).get("httpGet")
            f = "%s.spec.containers[0].%s" % (r0.fprefix, probe)
            if not hg:
                err(errors, r0.doc, f, "the rank-0 pod %s needs an HTTP GET /health %s" % (r0.name, probe))
            elif hg.get("path") != "/health" or port_number(hg.get("port"), c0) != ival("GANTRY_HTTP_PORT", "8080"):
                err(errors, r0.doc, f + ".httpGet", "must ask /health on GANTRY_HTTP_PORT, not %s on %s"
                    % (hg.get("path"), hg.get("port")))
        drain = ival("GANTRY_DRAIN_TIMEOUT", "30")
        for p in rank_pods:
            grace = p.spec.get("terminationGracePeriodSeconds", 30)
            if drain is not None and grace < drain + 15:
                err(errors, p.doc, p.fprefix + ".spec.terminationGracePeriodSeconds",
                    "%s s does not cover the %d s drain, the preStop delay (5 s) and the job's stop (10 s)"
                    % (grace, drain))
        # The plain variant's hostfile step lists GANTRY_WORKER_PODS workers.
        for i, ic in enumerate(r0.spec.get("initContainers") or []):
            n = env_of(ic, configmaps).get("GANTRY_WORKER_PODS")
            if n is not None:
                workers = [p for p in rank_pods if not p.rank0 and p.doc is not r0.doc]
                if str(len(workers)) != str(n):
                    err(errors, r0.doc, "%s.spec.initContainers[%d].env.GANTRY_WORKER_PODS" % (r0.fprefix, i),
                        "the hostfile lists %s worker pods, but the manifests make %d" % (n, len(workers)))

    # Services: selectors and ports.
    for s in services:
        sspec = s.obj.get("spec") or {}
        sel = sspec.get("selector") or {}
        if s.name in mpijobs:
            err(errors, s, "metadata.name", "the MPI Operator makes a Service named after MPIJob '%s'" % s.name)
        if not sel:
            err(errors, s, "spec.selector", "a Service of Gantry's pods needs a selector")
            continue
        chosen = [p for p in pods if selects(sel, p.labels)]
        headless = sspec.get("clusterIP") == "None"
        if headless:
            users = [d for d in docs if d.kind == "StatefulSet" and (d.obj.get("spec") or {}).get("serviceName") == s.name]
            for p in pods:
                if p.doc in users and p not in chosen:
                    err(errors, s, "spec.selector", "does not select pod %s of StatefulSet %s, which it names"
                        % (p.name, p.doc.name))
        elif rank0 and [p.name for p in chosen] != [rank0[0].name]:
            err(errors, s, "spec.selector", "%s selects %s; a client Service must select exactly the rank-0 pod %s"
                % (sel, ", ".join(p.name for p in chosen) or "no pod", rank0[0].name))
        for i, port in enumerate(sspec.get("ports") or []):
            target = port.get("targetPort", port.get("port"))
            for p in chosen:
                c = (p.spec.get("containers") or [{}])[0]
                if not port_declared(target, c):
                    err(errors, s, "spec.ports[%d].targetPort" % i, "%r is not a declared containerPort of pod %s"
                        % (target, p.name))

    # Workload selectors select their own template (the API server refuses
    # them otherwise); StatefulSets name a headless Service.
    for d in docs:
        if d.kind in ("StatefulSet", "Deployment"):
            ml = ((d.obj.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
            tl = (((d.obj.get("spec") or {}).get("template") or {}).get("metadata") or {}).get("labels") or {}
            if not ml or any(tl.get(k) != v for k, v in ml.items()):
                err(errors, d, "spec.selector.matchLabels", "%s does not select the pod template's labels %s"
                    % (ml, tl))
        if d.kind != "StatefulSet":
            continue
        sn = (d.obj.get("spec") or {}).get("serviceName")
        svc = byname.get(("Service", sn))
        if not svc or (svc.obj.get("spec") or {}).get("clusterIP") != "None":
            err(errors, d, "spec.serviceName", "no headless Service '%s' among the manifests" % sn)
        elif not (svc.obj.get("spec") or {}).get("publishNotReadyAddresses"):
            err(errors, svc, "spec.publishNotReadyAddresses", "must be true: the ranks must resolve before they are ready")

    # Jobs that talk to the server: --host names a Service and --port one of its ports.
    for p in pods:
        for i, c in enumerate(p.spec.get("containers") or []):
            argv = [str(x) for x in (c.get("command") or []) + (c.get("args") or [])]
            if "bench" not in argv or "--host" not in argv:
                continue
            host = argv[argv.index("--host") + 1] if argv.index("--host") + 1 < len(argv) else ""
            svc = byname.get(("Service", host.split(".")[0]))
            f = "%s.spec.containers[%d].command" % (p.fprefix, i)
            if not svc:
                err(errors, p.doc, f, "--host %s names no Service among the manifests" % host)
                continue
            port = argv[argv.index("--port") + 1] if "--port" in argv else "7733"
            if int(port) not in [x.get("port") for x in (svc.obj.get("spec") or {}).get("ports") or []]:
                err(errors, p.doc, f, "--port %s is not a port of Service %s" % (port, svc.name))


def validate(paths):
    """All error sentences for the files taken as one set (empty: valid)."""
    errors = []
    docs = load(paths, errors)
    # The operator's rules and the cross checks read only documents that
    # passed their schema (types known); the others have their errors.
    valid = [d for d in docs if check_schema(d, errors)]
    seen = {}
    for d in valid:
        if (d.kind, d.name) in seen:
            err(errors, d, "metadata.name", "also the name of a %s in %s" % (d.kind, seen[(d.kind, d.name)].path))
        seen[(d.kind, d.name)] = d
    try:
        for d in valid:
            if (d.api, d.kind) == MPIJOB:
                check_mpijob(d, errors)
        check_set(valid, errors)
    except (AttributeError, TypeError, ValueError, KeyError, IndexError) as e:
        # The schemas allow null in many places that the checks read; such
        # a document stops the checks with a sentence, never a traceback.
        errors.append("the checks across the manifests stopped at a value they cannot read (%r): "
                      "a field is null or empty where Gantry's deployment needs it" % e)
    return errors


def main(argv):
    if not argv:
        print(__doc__)
        return 2
    errors = validate(argv)
    for e in errors:
        print(e)
    if not errors:
        print("ok: %d files" % len(argv))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
