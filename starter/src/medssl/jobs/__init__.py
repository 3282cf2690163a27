"""Running many jobs past one process, through submitit: ``--executor inline | local | slurm``.

``executors``: the option, the cluster settings (``--cluster-config``) and the submitit executor they make.
``jobbook``: a batch of jobs, with its record and logs beside the results, dependencies and ``status``.
Used by ``python -m medssl.efficiency`` and by the course's ``batch``; submitit is imported only when used.
"""
