"""Makes a notebook's first code cell the library cell (environment/tools/templates/library-cell.cs.txt): it finds
AttentionLab.dll through $ATTNLAB_LIB or ../artifacts/lib/, or stops with a message saying how to point it at the
library, and references it. Re-runnable: a notebook that has an older library cell gets the current text; the old
`#r "../artifacts/lib/AttentionLab.dll"` line is taken out of the next code cell. Only those cells change.
Usage: python3 environment/tools/nblib.py [--check] [NOTEBOOK.ipynb ...]   (default: every notebooks/*.ipynb)
--check changes nothing and exits 1 naming each notebook whose first code cell is not the current library cell."""
import glob, json, os, sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TEMPLATE = os.path.join(ROOT, "environment", "tools", "templates", "library-cell.cs.txt")
MARKER = "// Finds AttentionLab.dll:"
OLD_REFERENCE = '#r "../artifacts/lib/AttentionLab.dll"'


def lines(text):
    parts = [l + "\n" for l in text.split("\n")]
    parts[-1] = parts[-1].rstrip("\n")
    return [p for p in parts if p]


def library_cell():
    return {"cell_type": "code", "execution_count": None,
            "metadata": {"dotnet_interactive": {"language": "csharp"}, "polyglot_notebook": {"kernelName": "csharp"}},
            "outputs": [], "source": lines(open(TEMPLATE).read().strip("\n"))}


def update(nb):
    """Returns the notebook with the current library cell first among its code cells."""
    cell = library_cell()
    code = [i for i, c in enumerate(nb["cells"]) if c["cell_type"] == "code"]
    if code and "".join(nb["cells"][code[0]]["source"]).startswith(MARKER):
        nb["cells"][code[0]]["source"] = cell["source"]
        nb["cells"][code[0]]["outputs"] = []
        nb["cells"][code[0]]["execution_count"] = None
    else:
        at = code[0] if code else len(nb["cells"])
        nb["cells"].insert(at, cell)
    code = [i for i, c in enumerate(nb["cells"]) if c["cell_type"] == "code"]
    if len(code) > 1:
        nxt = nb["cells"][code[1]]
        src = "".join(nxt["source"]).split("\n")
        kept = [l for l in src if l.strip() != OLD_REFERENCE]
        if kept != src:
            nxt["source"] = lines("\n".join(kept))
    return nb


def is_current(nb):
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    return bool(code) and code[0]["source"] == library_cell()["source"] and not any(
        l.strip() == OLD_REFERENCE for c in code for l in "".join(c["source"]).split("\n"))


def main(args):
    check = "--check" in args
    paths = [a for a in args if a != "--check"] or sorted(glob.glob(os.path.join(ROOT, "notebooks", "*.ipynb")))
    stale = []
    for path in paths:
        with open(path, encoding="utf-8") as f:
            nb = json.load(f)
        if is_current(nb):
            continue
        stale.append(path)
        if not check:
            with open(path, "w", encoding="utf-8") as f:
                json.dump(update(nb), f, indent=1, ensure_ascii=False)
                f.write("\n")
    verb = "lack" if check else "now have"
    print(f"nblib.py: {len(stale)} of {len(paths)} notebook(s) {verb} the current library cell" + "".join("\n  " + p for p in stale))
    return 1 if check and stale else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
