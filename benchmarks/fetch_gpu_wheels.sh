#!/usr/bin/env bash
# Download the wheels of benchmarks/gpu_wheels.txt (CPython 3.12, manylinux x86_64) into .whl/,
# for a GPU machine without internet that has torch but not Snakemake. Then, there:
#   python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
#       --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD/src
# (the whole command line of the check is in benchmarks/gpu_check.py's docstring).
#
#   bash benchmarks/fetch_gpu_wheels.sh            # into .whl/ (emptied first)
#   PY=/usr/bin/python3 WHL=/tmp/w bash benchmarks/fetch_gpu_wheels.sh
#   PYVER=3.11 WHL=/tmp/w311 bash benchmarks/fetch_gpu_wheels.sh   # to rehearse on Python 3.11
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python3}
WHL=${WHL:-.whl}
PYVER=${PYVER:-3.12}  # the GPU machine's Python
LIST=benchmarks/gpu_wheels.txt

# `name==version` of each line; those marked `# build` have no wheel on the index.
mapfile -t binary < <(grep -v '# build' "$LIST" | sed -e 's/#.*//' -e 's/[[:space:]]//g' | grep -v '^$')
mapfile -t build < <(grep '# build' "$LIST" | sed -e 's/#.*//' -e 's/[[:space:]]//g' | grep -v '^$')
rm -rf "$WHL"
mkdir -p "$WHL"
platforms=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_24_x86_64 \
    manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64; do
    platforms+=(--platform "$p")
done
quiet() { grep -v "WARNING: Location 'file:" || true; }  # a local index's missing folders
"$PY" -m pip download --quiet --no-deps --only-binary=:all: --python-version "$PYVER" \
    --implementation cp "${platforms[@]}" -d "$WHL" "${binary[@]}" 2>&1 | quiet
if [ "${#build[@]}" -gt 0 ]; then
    "$PY" -m pip wheel --quiet --no-deps -w "$WHL" "${build[@]}" 2>&1 | quiet
    for f in "$WHL"/*.whl; do  # what was built here must run on any CPython 3
        case "$f" in *-py3-none-any.whl | *-py2.py3-none-any.whl | *-cp"${PYVER/./}"-*) ;;
        *) echo "fetch_gpu_wheels: $f is not a wheel for CPython $PYVER" >&2 && exit 1 ;;
        esac
    done
fi

# Exactly one wheel per line of the list: two versions of a package stop the install there.
want=$((${#binary[@]} + ${#build[@]}))
got=$(find "$WHL" -maxdepth 1 -type f -name '*.whl' | wc -l)
if [ "$got" -ne "$want" ]; then
    echo "fetch_gpu_wheels: $want packages listed, $got wheels in $WHL/" >&2
    exit 1
fi
echo "fetch_gpu_wheels: $got wheels in $WHL/, $(du -sh "$WHL" | cut -f1)" \
    "($(du -sb "$WHL" | cut -f1) bytes)"
