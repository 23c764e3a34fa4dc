#!/usr/bin/env python3
"""Include-order check for cuseg's layers (docs/ARCHITECTURE.md).

Data flows one way: core -> kernels -> engine -> data -> model -> pipeline -> apps. A file in
layer L may include project headers of L and of the layers below it, always spelled
"cuseg/<layer>/...". This fails (exit 1, one line per offence) on:
  - an include of a higher layer (e.g. kernels/x.cu including cuseg/engine/tensor.h),
  - a project header included without the cuseg/ prefix (it would not resolve once installed),
  - an include of test or benchmark code (tests/, bench/, the op case lists opcases/): the
    library never includes them.
Usage: check_layers.py [REPO_ROOT]   (default: the parent of this script's folder)
       check_layers.py --self-test      (the check finds each kind of offence in a crafted tree)
"""
import pathlib
import re
import sys

LAYERS = ["core", "kernels", "engine", "data", "model", "pipeline", "apps"]
RANK = {name: i for i, name in enumerate(LAYERS)}
SUFFIXES = {".h", ".hpp", ".cuh", ".cpp", ".cu", ".cc"}
INCLUDE = re.compile(r'^\s*#\s*include\s*[<"]([^">]+)[">]')
# Folders of test and benchmark code (tests/opcases is included as "opcases/...").
TEST_ONLY = {"tests", "bench", "opcases"}


def check(root: pathlib.Path) -> list:
    problems = []
    for layer in LAYERS:
        folder = root / layer
        if not folder.is_dir():
            continue
        for path in sorted(folder.rglob("*")):
            if path.suffix not in SUFFIXES or not path.is_file():
                continue
            rel = path.relative_to(root)
            for lineno, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
                m = INCLUDE.match(line)
                if not m:
                    continue
                target = m.group(1)
                parts = target.split("/")
                if parts[0] in TEST_ONLY:
                    problems.append(f"{rel}:{lineno}: '{target}' is test or benchmark code, "
                                    f"which the library never includes")
                    continue
                if parts[0] in RANK:
                    problems.append(f"{rel}:{lineno}: project header '{target}' without the "
                                    f"cuseg/ prefix")
                    continue
                if parts[0] != "cuseg" or len(parts) < 3:
                    continue
                dep = parts[1]
                if dep not in RANK:
                    problems.append(f"{rel}:{lineno}: '{target}' is not in a layer folder")
                elif RANK[dep] > RANK[layer]:
                    problems.append(f"{rel}:{lineno}: {layer}/ includes '{target}' from the "
                                    f"higher layer {dep}/ (order: {' -> '.join(LAYERS)})")
    return problems


def self_test() -> int:
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        t = pathlib.Path(tmp)
        files = {
            "kernels/ok.h": '#include "cuseg/core/check.h"\n',
            "kernels/up.cu": '#include "cuseg/engine/tensor.h"\n',
            "data/bare.cpp": '#include "engine/tensor.h"\n',
            "model/net.cpp": '#include "cuseg/pipeline/config.h"\n',
            "engine/cuda/deep.cpp": '#include "cuseg/data/image.h"\n',
            "apps/top.cpp": '#include "cuseg/pipeline/config.h"\n',
            "engine/cases.cpp": '#include "opcases/op_cases.h"\n',
        }
        for name, text in files.items():
            (t / name).parent.mkdir(parents=True, exist_ok=True)
            (t / name).write_text(text)
        found = sorted(p.split(":")[0] for p in check(t))
        want = ["data/bare.cpp", "engine/cases.cpp", "engine/cuda/deep.cpp", "kernels/up.cu",
                "model/net.cpp"]
        if found != want:
            print(f"layering self-test: found {found}, expected {want}")
            return 1
    print("layering self-test: all 5 planted offences found, 2 clean files passed")
    return 0


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--self-test":
        return self_test()
    root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else pathlib.Path(__file__).parent.parent)
    problems = check(root.resolve())
    for p in problems:
        print(p)
    if problems:
        print(f"layering: {len(problems)} include(s) against the layer order")
        return 1
    print("layering: every include follows " + " -> ".join(LAYERS))
    return 0


if __name__ == "__main__":
    sys.exit(main())
