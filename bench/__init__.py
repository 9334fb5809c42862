"""The benchmark: the measuring run, the plain-Celery baseline app and the bench brain."""
