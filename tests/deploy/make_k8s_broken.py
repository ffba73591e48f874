#!/usr/bin/env python3
"""Writes the broken copies of the good manifests in tests/data/k8s-broken:
each is a file of deploy/k8s with one change, and a header that names the
file it replaces and the field its validation must report. Run it after
editing deploy/k8s (test_k8s_manifests.py fails on a stale copy); the
hand-written broken manifests there (no "# replaces:") are left alone.

  tests/deploy/make_k8s_broken.py [--check]   (--check: exit 1 if stale)
"""
import os
import sys

SRC = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(SRC, "tests", "data", "k8s-broken")
M, MS = "deploy/k8s/mpijob/mpijob.yaml", "deploy/k8s/mpijob/service.yaml"
H, W = "deploy/k8s/plain/head-statefulset.yaml", "deploy/k8s/plain/worker-statefulset.yaml"
V, J = "deploy/k8s/values.yaml", "deploy/k8s/bench-job.yaml"

# (file written, file replaced, field the error names, what is broken, old text, new text)
CASES = [
    ("mpijob-two-launchers.yaml", M, "spec.mpiReplicaSpecs.Launcher.replicas", "two launcher replicas",
     "    Launcher:\n      replicas: 1", "    Launcher:\n      replicas: 2"),
    ("mpijob-no-workers.yaml", M, "spec.mpiReplicaSpecs.Worker.replicas", "no worker replica",
     "    Worker:\n      replicas: 1", "    Worker:\n      replicas: 0"),
    ("mpijob-string-replicas.yaml", M, "spec.mpiReplicaSpecs.Worker.replicas", "replicas as a string",
     "    Worker:\n      replicas: 1", "    Worker:\n      replicas: \"1\""),
    ("mpijob-restart-always.yaml", M, "spec.mpiReplicaSpecs.Worker.restartPolicy", "restartPolicy Always",
     "    Worker:\n      replicas: 1\n      restartPolicy: OnFailure",
     "    Worker:\n      replicas: 1\n      restartPolicy: Always"),
    ("mpijob-clean-pod-policy.yaml", M, "spec.runPolicy.cleanPodPolicy", "an unknown cleanPodPolicy",
     "cleanPodPolicy: Running", "cleanPodPolicy: Sometimes"),
    ("mpijob-slots.yaml", M, "spec.slotsPerWorker", "slotsPerWorker differs from the GPUs per pod",
     "slotsPerWorker: 8", "slotsPerWorker: 4"),
    ("mpijob-unknown-field.yaml", M, "spec.slotPerWorker", "a misspelt field (the CRD schema, made strict)",
     "slotsPerWorker: 8", "slotsPerWorker: 8\n  slotPerWorker: 8"),
    ("mpijob-template-unknown-field.yaml", M, "spec.mpiReplicaSpecs.Worker.template.spec.containers[0].comand",
     "a misspelt container field in a pod template",
     '              command: ["/usr/local/bin/gantry-sshd"]', '              comand: ["/usr/local/bin/gantry-sshd"]'),
    ("mpijob-probe-port.yaml", M,
     "spec.mpiReplicaSpecs.Launcher.template.spec.containers[0].readinessProbe.httpGet.port",
     "a readiness probe on an undeclared port",
     "              readinessProbe:\n                httpGet:\n                  path: /health\n                  port: http",
     "              readinessProbe:\n                httpGet:\n                  path: /health\n                  port: metrics"),
    ("mpijob-service-selects-worker.yaml", MS, "spec.selector",
     "the client Service selects the worker, which does not run rank 0",
     "training.kubeflow.org/job-role: launcher\n    app.kubernetes.io/component: coordinator",
     "training.kubeflow.org/job-role: worker"),
    ("statefulset-bad-replicas.yaml", W, "spec.replicas", "replicas is not an integer",
     "  replicas: 1", "  replicas: one"),
    ("statefulset-worker-count.yaml", W, "GANTRY_WORKER_PODS", "two worker pods, the hostfile lists one",
     "  replicas: 1", "  replicas: 2"),
    ("statefulset-selector.yaml", W, "spec.selector.matchLabels", "the selector does not select the pod template",
     "      app.kubernetes.io/component: ranks\n  template:", "      app.kubernetes.io/component: worker\n  template:"),
    ("statefulset-model-writable.yaml", W, "persistentVolumeClaim.readOnly", "the model volume is writable",
     "            claimName: gantry-models\n            readOnly: true",
     "            claimName: gantry-models\n            readOnly: false"),
    ("statefulset-no-shm.yaml", H, "volumeMounts", "no /dev/shm for NCCL",
     "            - name: dshm\n              mountPath: /dev/shm\n", ""),
    ("statefulset-image.yaml", H, "spec.template.spec.initContainers[0].image", "an image deploy/docker does not build",
     "        - name: hostfile\n          image: registry.example.com/gantry:0.1.0",
     "        - name: hostfile\n          image: busybox:1.36"),
    ("service-not-headless.yaml", "deploy/k8s/plain/ranks-service.yaml", "spec.serviceName",
     "the ranks Service is not headless", "  clusterIP: None\n", ""),
    ("service-unknown-field.yaml", "deploy/k8s/plain/service.yaml", "spec.selektor", "a misspelt field",
     "  selector:", "  selektor:"),
    ("configmap-layout.yaml", V, "data.GANTRY_TP", "tp x pp does not match the GPUs",
     'GANTRY_TP: "8"', 'GANTRY_TP: "4"'),
    ("configmap-int-value.yaml", V, "data.GANTRY_PP", "a ConfigMap value that is not a string",
     'GANTRY_PP: "2"', "GANTRY_PP: 2"),
    ("job-unknown-field.yaml", J, "spec.backofLimit", "a misspelt Job field", "  backoffLimit: 0", "  backofLimit: 0"),
    ("job-port.yaml", J, "spec.template.spec.containers[0].command", "the benchmark asks a port the Service lacks",
     '            - "7733"', '            - "7744"'),
    ("secret-unknown-field.yaml", "deploy/k8s/secrets/ssh-secret.yaml", "stringdata", "a misspelt Secret field",
     "stringData:", "stringdata:"),
]


def render(case):
    """The broken copy's text, or raises when the good file lacks the text to change."""
    name, src, expect, why, old, new = case
    with open(os.path.join(SRC, src)) as f:
        text = f.read()
    if old not in text:
        raise SystemExit("make_k8s_broken: %s no longer holds the text %s changes: %r" % (src, name, old))
    lines = text.replace(old, new, 1).split("\n")
    while lines and lines[0].startswith("#"):  # the good file's header comment
        lines.pop(0)
    return ("# Broken on purpose (tests/deploy/test_k8s_manifests.py): %s\n# replaces: %s\n# expect: %s\n"
            % (why, src, expect)) + "\n".join(lines)


def stale():
    out = []
    for case in CASES:
        path = os.path.join(OUT, case[0])
        have = open(path).read() if os.path.exists(path) else None
        if have != render(case):
            out.append(case[0])
    return out


def main(argv):
    if argv[:1] == ["--check"]:
        s = stale()
        for n in s:
            print("stale: tests/data/k8s-broken/%s (run tests/deploy/make_k8s_broken.py)" % n)
        return 1 if s else 0
    for case in CASES:
        with open(os.path.join(OUT, case[0]), "w") as f:
            f.write(render(case))
    print("make_k8s_broken: wrote %d files in %s" % (len(CASES), OUT))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
