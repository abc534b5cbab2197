"""Run the chart's rendered container specs under a real Docker engine, the way the kubelet would.

- :mod:`tests.containers.kube`: workloads, Services and env resolution from the rendered chart;
- :mod:`tests.containers.translate`: one container spec to a ``docker run`` command line;
- :mod:`tests.containers.engine`: the docker CLI (run, probe, logs, kill, clean up).
"""
