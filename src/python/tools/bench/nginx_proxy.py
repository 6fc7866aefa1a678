"""nginx as a reverse-proxy peer: what a user would put in front instead, and the floor of any proxy hop.

Debian's nginx (``apt-get install nginx-light`` or ``nginx``), one worker process, keep-alive
connections to the upstream (``keepalive`` in the upstream block and HTTP/1.1 with an empty
``Connection`` header, as nginx's documentation asks for), no access log, no buffering limits
beyond its defaults. It runs in the foreground from a configuration written to a temporary folder,
so it needs no root paths; the caller gives the folder and removes it.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from urllib.parse import urlsplit

from flotilla_kit.testing.processes import ServiceProcess

_CONFIG = """\
daemon off;
master_process on;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {dir}/client_body;
  proxy_temp_path {dir}/proxy;
  fastcgi_temp_path {dir}/fastcgi;
  uwsgi_temp_path {dir}/uwsgi;
  scgi_temp_path {dir}/scgi;
  upstream backend {{
    server {upstream};
    keepalive 64;
  }}
  server {{
    listen 127.0.0.1:{port};
    location = /healthz {{ return 200 "ok"; }}
    location / {{
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $host;
    }}
  }}
}}
"""


def nginx_binary() -> str:
    """The nginx on PATH (or Debian's /usr/sbin/nginx); raises FileNotFoundError with what to install."""
    found = shutil.which("nginx") or (shutil.which("nginx", path="/usr/sbin:/usr/local/sbin"))
    if found is None:
        raise FileNotFoundError("nginx is not installed: apt-get install nginx-light (or nginx)")
    return found


def serve_nginx(upstream_url: str, port: int, directory: Path) -> ServiceProcess:
    """nginx proxying every path on ``port`` to ``upstream_url`` (http://host:port), its files in
    ``directory`` (made if missing); ready once it answers."""
    parts = urlsplit(upstream_url)
    directory.mkdir(parents=True, exist_ok=True)
    config = directory / "nginx.conf"
    config.write_text(_CONFIG.format(dir=directory, upstream=f"{parts.hostname}:{parts.port}", port=port))
    # -e: the error log before the configuration is read (Debian's default is under /var/log).
    process = ServiceProcess(
        [nginx_binary(), "-p", str(directory), "-c", str(config), "-e", str(directory / "error.log")], port=port
    )
    process.wait_ready(timeout=30, path="/healthz")
    return process
