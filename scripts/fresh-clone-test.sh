#!/usr/bin/env bash
# The README's contract: `cargo test` passes in a fresh clone on a machine that has the Rust
# toolchain and curl and nothing else. Runs it in a new clone of this checkout (HEAD plus any
# uncommitted changes to tracked files; untracked files are left out, as a clone leaves them),
# with its own target directory and an environment holding only HOME and a PATH of symlinks to:
#   the Rust toolchain: cargo, rustc, rustdoc (the active rustup toolchain's bin/), and the C
#     compiler and binutils rustc links with (cc, as, ld, ar);
#   curl;
#   coreutils.
# So a test that starts nc, sh, kill, openssl, git, python, systemd's tools or anything else
# fails here, at once. Crates come from the registry as on any machine (CARGO_HOME is kept).
#   scripts/fresh-clone-test.sh [cargo test arguments...]
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# The commit to test: HEAD, or a commit of the tracked files as they are now.
revision=$(git stash create)
revision=${revision:-$(git rev-parse HEAD)}
git clone --quiet --no-checkout . "$work/onepoll"
git -C "$work/onepoll" checkout --quiet --detach "$revision"

bin=$work/bin
mkdir "$bin"
link() { # commands to link into $bin, each found on today's PATH
    local tool path
    for tool in "$@"; do
        path=$(command -v "$tool") || { echo "fresh-clone-test: no $tool here" >&2; exit 1; }
        ln -sf "$(readlink -f "$path")" "$bin/$tool"
    done
}
for tool in "$(rustc --print sysroot)"/bin/*; do ln -s "$tool" "$bin/"; done
link cc as ld ar curl
while read -r tool; do ln -sf "$tool" "$bin/"; done < <(dpkg -L coreutils | grep -E '^/(usr/)?bin/.')

echo "fresh-clone-test: cargo test in a clone of $(git rev-parse --short "$revision"), PATH of $(ls "$bin" | wc -l) commands: $(ls "$bin" | grep -vxFf <(dpkg -L coreutils | xargs -n1 basename) | tr '\n' ' ')"
cd "$work/onepoll"
env -i HOME="$HOME" PATH="$bin" CARGO_HOME="${CARGO_HOME:-$HOME/.cargo}" \
    RUSTUP_HOME="${RUSTUP_HOME:-$HOME/.rustup}" ${CI:+CI="$CI"} cargo test "$@"
