"""The composition root: the command line, the whole-stack run, the process supervisor,
the embedded servers and the worker entry. The only package that knows every other one."""
