#!/usr/bin/env bash
# The Lambda zips, built the way `sam build` (rust-cargolambda) builds them: release profile,
# arm64 (aarch64-unknown-linux-gnu, linked by Zig), one `bootstrap` per function. Prints each
# zip's name and size in bytes, and fails unless each holds an aarch64 executable named bootstrap.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/venv.sh deploy
if ! rustup target list --installed | grep -x aarch64-unknown-linux-gnu >/dev/null; then
  rustup target add aarch64-unknown-linux-gnu
fi
# cargo-lambda is a cargo subcommand on PATH; it finds Zig as `python3 -m ziglang`.
export PATH="$PWD/.venv-deploy/bin:$PATH"
cargo lambda build --release --arm64 --output-format zip -p traffic-switch -p promoter
python3 - "${CARGO_TARGET_DIR:-target}/lambda" traffic-switch promoter <<'PY'
import os, struct, sys, zipfile
lambda_dir, names = sys.argv[1], sys.argv[2:]
for name in names:
    path = os.path.join(lambda_dir, name, "bootstrap.zip")
    with zipfile.ZipFile(path) as z:
        info = z.getinfo("bootstrap")
        head = z.open(info).read(20)
    # ELF, 64-bit, little-endian, e_machine 183 = AArch64; executable bits set for Lambda.
    machine = struct.unpack_from("<H", head, 18)[0]
    if head[:4] != b"\x7fELF" or head[4] != 2 or machine != 183:
        sys.exit(f"{path}: bootstrap is not a 64-bit aarch64 ELF (e_machine {machine})")
    if not (info.external_attr >> 16) & 0o111:
        sys.exit(f"{path}: bootstrap is not executable")
    print(f"{name}.zip {os.path.getsize(path)} bytes (bootstrap {info.file_size} bytes unzipped)")
PY
