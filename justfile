# Recipes for working on rssc. `just` is optional: each recipe is one plain command you can
# also run by hand (install just with `cargo install just`).

# List the recipes.
default:
    @just --list

# Run the whole test suite (the README's test command).
test *args:
    bash scripts/test {{args}}

# Run the sandbox demo (the README's first command); e.g. `just sandbox --jobs 20 --keep`.
sandbox *args:
    bash scripts/sandbox {{args}}

# Run the benchmarks (release builds) and regenerate docs/benchmarks.md; e.g. `just bench --quick`.
bench *args:
    bash scripts/bench {{args}}

# Check formatting and run clippy with warnings as errors.
lint:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets --locked -- -D warnings

# Regenerate the committed generated files (deploy/crds/, then what the charts render from them:
# the chart's CRD copy, deploy/install.yaml and the kustomize base).
generate:
    cargo run --quiet -p rssc-api --bin crdgen
    bash scripts/render-manifests

# Lint and render both Helm charts across their ci/ values files (the chart tests do more).
charts:
    cargo test --locked -p rssc-chart-tests

# Fail if a committed generated file is stale.
check-generated:
    bash scripts/check-generated

# Run exactly what CI runs.
ci:
    bash .ci/run
