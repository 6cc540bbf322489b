"""gunicorn reads ./gunicorn.conf.py from its working directory, so the web command stays short.

Two settings the demo needs whatever the command line says:
- no control socket: gunicorn 23+ opens ``$HOME/.gunicorn/gunicorn.ctl`` by default, one path
  shared by every gunicorn of the user, so two stacks on one machine would fight over it;
- a log line once a worker has imported the app, because "Listening at" is printed by the
  master before any worker can answer a request.
"""

from __future__ import annotations

from typing import Any

control_socket_disable = True


def post_worker_init(worker: Any) -> None:
    worker.log.info("bkdemo web: worker %s loaded the app and is serving", worker.pid)
