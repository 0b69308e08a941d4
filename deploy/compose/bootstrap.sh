#!/bin/sh
# The compose stack's one-shot bootstrap, run by the bootstrap service after the migrations:
# the topics, a starter model trained on the sample set and promoted to champion through the
# golden-set gates, an admin user for the review UI and an upload API key. Safe to run
# again, one at a time as compose runs it: training is skipped when the data is unchanged,
# registering and promoting an existing version change nothing, the user and the key are
# made once.
#   TRIAGE_SAMPLE_DIR      the sample set: train/, golden/      (default /app/data/sample)
#   TRIAGE_MODELS_DIR      where trained artifacts go           (default /data/models)
#   TRIAGE_BOOTSTRAP_DIR   where api-key and admin-password are kept, mode 0600
#                                                               (default /data/bootstrap)
#   TRIAGE_ADMIN_USER      the review UI's admin                (default admin)
#   TRIAGE_ADMIN_PASSWORD  its password (unset: one is made and kept in admin-password)
set -eu
sample=${TRIAGE_SAMPLE_DIR:-/app/data/sample}
keys=${TRIAGE_BOOTSTRAP_DIR:-/data/bootstrap}
models=${TRIAGE_MODELS_DIR:-/data/models}
admin=${TRIAGE_ADMIN_USER:-admin}
say() { printf '==> bootstrap: %s\n' "$*" >&2; }

say "training the starter model on $sample/train (nothing to do when it was trained on this data)"
artifact=$(triage model train --data "$sample/train" --out "$models" \
  --changelog "starter model trained by the compose bootstrap")
version=$(basename "$artifact")
say "registering $version"
triage model register "$artifact" --actor compose-bootstrap >/dev/null

say "creating the topics, with a routed topic for each of the model's labels"
# The model is not aliased yet, so the registry's aliases do not name its labels: name it.
triage topics apply --model-version "$version"

say "promoting $version to champion through the golden-set gates"
triage model promote "$version" --golden "$sample/golden" --to champion

# The admin's password: TRIAGE_ADMIN_PASSWORD, or one made here and kept in admin-password.
password=${TRIAGE_ADMIN_PASSWORD:-}
if [ -z "$password" ]; then
  if [ ! -s "$keys/admin-password" ]; then
    (umask 077 && mkdir -p "$keys" && python3 -c 'import secrets; print(secrets.token_urlsafe(18))' \
      >"$keys/admin-password")
  fi
  password=$(cat "$keys/admin-password")
fi
if out=$(printf '%s\n' "$password" | triage user add "$admin" --role admin --password-stdin 2>&1); then
  if [ -n "${TRIAGE_ADMIN_PASSWORD:-}" ]; then
    say "added the admin user $admin (password: TRIAGE_ADMIN_PASSWORD)"
  else
    say "added the admin user $admin: the password is in $keys/admin-password"
  fi
else
  case $out in
    *"exists"*) say "the admin user $admin exists; left as it is" ;;
    *) printf '%s\n' "$out" >&2; exit 1 ;;
  esac
fi

if [ -s "$keys/api-key" ]; then
  say "the upload API key made before is in $keys/api-key"
else
  (umask 077 && mkdir -p "$keys" && triage apikey create compose --rotate >"$keys/api-key.part")
  mv "$keys/api-key.part" "$keys/api-key"
  say "made an upload API key named compose: it is in $keys/api-key"
fi
say "done"
