"""Builds a Polyglot (.net-csharp) notebook without outputs from a text file whose cells start with a line "#%% md" or "#%% cs".
Usage: python3 environment/tools/nbgen.py SOURCE.txt notebooks/NN-slug.ipynb"""
import json, sys
def build(src_path, out_path):
    cells, kind, buf = [], None, []
    def flush():
        if kind is None: return
        text = "\n".join(buf).strip("\n")
        lines = [l + "\n" for l in text.split("\n")]
        if lines: lines[-1] = lines[-1].rstrip("\n")
        if kind == "md":
            cells.append({"cell_type": "markdown", "metadata": {}, "source": lines})
        else:
            cells.append({"cell_type": "code", "execution_count": None,
                          "metadata": {"dotnet_interactive": {"language": "csharp"}, "polyglot_notebook": {"kernelName": "csharp"}},
                          "outputs": [], "source": lines})
    for line in open(src_path).read().split("\n"):
        if line.startswith("#%% "):
            flush(); kind = line[4:].strip(); buf = []
        else:
            buf.append(line)
    flush()
    nb = {"cells": cells,
          "metadata": {"kernelspec": {"display_name": ".NET (C#)", "language": "C#", "name": ".net-csharp"},
                       "language_info": {"file_extension": ".cs", "mimetype": "text/x-csharp", "name": "C#", "pygments_lexer": "csharp", "version": "13.0"},
                       "polyglot_notebook": {"kernelInfo": {"defaultKernelName": "csharp", "items": [{"aliases": [], "languageName": "csharp", "name": "csharp"}]}}},
          "nbformat": 4, "nbformat_minor": 5}
    with open(out_path, "w") as f:
        json.dump(nb, f, indent=1, ensure_ascii=False); f.write("\n")
build(sys.argv[1], sys.argv[2])
