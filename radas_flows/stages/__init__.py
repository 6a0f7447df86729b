"""The stages of an experiment, one module each, in the order the flow runs them.

``check`` → ``submit`` → ``monitor`` → ``oom_retry`` → ``analyze`` → ``notify``: each is a thin
Prefect task over plain functions, and none asks where the run goes (that is the target's job).
"""
