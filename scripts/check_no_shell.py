#!/usr/bin/env python3
"""No shell, no child process in the product (README "Reliability").

cuseg's library and apps never start another program: no system(), popen(), exec*(),
posix_spawn*(), fork(), vfork() or wordexp() anywhere in core/ .. apps/, so no user input (file
names, flags, config values) can ever reach a shell. Tests and scripts may run the apps; they are
not checked. Fails (exit 1, one line per offence) on any such call outside comments and strings.
Usage: check_no_shell.py [REPO_ROOT]   (default: the parent of this script's folder)
       check_no_shell.py --self-test      (the check finds planted calls in a crafted tree)
"""
import pathlib
import re
import sys

PRODUCT = ["core", "kernels", "engine", "data", "model", "pipeline", "apps"]
SUFFIXES = {".h", ".hpp", ".cuh", ".cpp", ".cu", ".cc"}
CALL = re.compile(r"\b(system|popen|execl|execlp|execle|execv|execvp|execvpe|execve|fexecve|"
                  r"posix_spawnp?|fork|vfork|wordexp)\s*\(")
# What may stand before the name for it to be the C library's function: nothing, "::" or
# "std::". A member (".system(", "->system(") or another namespace's function is not it.
QUALIFIER = re.compile(r"(?:(?:\bstd)?\s*::\s*)?$")


def is_libc_call(line: str, m) -> bool:
    before = line[:m.start()]
    q = QUALIFIER.search(before)  # "", "::" or "std::" (always matches)
    head = before[:q.start()].rstrip()
    member = not q.group(0) and head.endswith((".", "->"))
    other_namespace = q.group(0).strip() == "::" and (head[-1:].isalnum() or head[-1:] == "_")
    return not (member or other_namespace)
STRING = re.compile(r'"(?:\\.|[^"\\])*"')
BLOCK = re.compile(r"/\*.*?\*/", re.S)


def code_lines(text: str):
    # Comments and string literals blanked, line numbers kept.
    text = BLOCK.sub(lambda m: "\n" * m.group(0).count("\n"), text)
    for line in text.splitlines():
        yield STRING.sub('""', line.split("//", 1)[0])


def check(root: pathlib.Path) -> list:
    problems = []
    for layer in PRODUCT:
        folder = root / layer
        if not folder.is_dir():
            continue
        for path in sorted(folder.rglob("*")):
            if path.suffix not in SUFFIXES or not path.is_file():
                continue
            for lineno, line in enumerate(code_lines(path.read_text(errors="replace")), 1):
                m = next((m for m in CALL.finditer(line) if is_libc_call(line, m)), None)
                if m:
                    problems.append(f"{path.relative_to(root)}:{lineno}: {m.group(1)}() starts a "
                                    f"process (the product never runs another program)")
    return problems


def self_test() -> int:
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        t = pathlib.Path(tmp)
        files = {
            "apps/shell.cpp": 'int main() { return std::system(("ls " + dir).c_str()); }\n',
            "data/pipe.cpp": 'FILE* f = popen(cmd, "r");\n',
            "engine/spawn.cpp": "pid_t p = fork();\nexecvp(argv[0], argv);\n",
            "pipeline/ok.cpp": '// system("x") in a comment\nconst char* s = "popen(";\n'
                               "int ecosystem(int);\nint y = filesystem(1);\nobj.system(2);\n",
            "core/block.cpp": "/* fork()\n   exec() */ int x;\n",
            "tests/allowed.cpp": 'popen("engine_infer", "r");\n',
        }
        for name, text in files.items():
            (t / name).parent.mkdir(parents=True, exist_ok=True)
            (t / name).write_text(text)
        found = sorted(p.rsplit(":", 2)[0] + ":" + p.split(":")[1] for p in check(t))
        want = ["apps/shell.cpp:1", "data/pipe.cpp:1", "engine/spawn.cpp:1", "engine/spawn.cpp:2"]
        if found != want:
            print(f"no-shell self-test: found {found}, expected {want}")
            return 1
    print("no-shell self-test: all 4 planted calls found; comments, strings, look-alikes and "
          "tests/ passed")
    return 0


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--self-test":
        return self_test()
    root = pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else pathlib.Path(__file__).parent.parent
    problems = check(root)
    for p in problems:
        print(p)
    if problems:
        return 1
    print(f"no-shell check: no process-starting call in {', '.join(PRODUCT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
