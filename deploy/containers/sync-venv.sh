#!/bin/sh
# sync-venv ARGS...: `uv sync` of the locked environment into /app/.venv, in an image build.
# Trusts the CA bundle given as the build secret ca-certificates (a TLS-intercepting proxy),
# and uses the host's uv cache when build.sh mounts it at /uv-host-cache (podman only),
# else the build's own cache mount.
set -eu
if [ -f /run/secrets/ca-certificates ]; then
  export SSL_CERT_FILE=/run/secrets/ca-certificates
fi
if [ -n "$(ls -A /uv-host-cache 2>/dev/null)" ]; then
  export UV_CACHE_DIR=/uv-host-cache
fi
exec uv sync --frozen --no-dev --no-editable "$@"
