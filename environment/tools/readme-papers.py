#!/usr/bin/env python3
"""Rewrites the Library and Paper columns of README.md's paper table from what the repository holds.

Library: the folder whose experiment declares `PaperInfo Paper { get; } = new(NN, ...)` (lib/AttentionLab/Papers/<Name>).
Paper:   the first arXiv / OpenReview / ACL Anthology / DOI link in the notebook's first markdown cell (the title card);
         a paper without a notebook keeps what the row already says (its official code, from the team's paper notes).
Notebook: a link once notebooks/NN-slug.ipynb exists. Run after adding a paper; NotebookLocationTests checks the result.
Usage: python3 environment/tools/readme-papers.py
"""
import json
import os
import re
import sys

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
HEADER = "| P | Paper | Family | Grade | Notebook | Library | Paper or code | Status |"
DECL = re.compile(r'PaperInfo\s+Paper\s*\{\s*get;\s*\}\s*=\s*new\s*\(\s*(\d+)\s*,')
LINK = re.compile(r'\]\((https?://(?:arxiv\.org|openreview\.net|aclanthology\.org|doi\.org)/[^)\s]+)\)')


def library_folders():
    found = {}
    papers = os.path.join(ROOT, "lib", "AttentionLab", "Papers")
    for folder in sorted(os.listdir(papers)):
        for name in sorted(os.listdir(os.path.join(papers, folder))):
            if name.endswith(".cs"):
                m = DECL.search(open(os.path.join(papers, folder, name), encoding="utf-8").read())
                if m:
                    found.setdefault(int(m.group(1)), f"lib/AttentionLab/Papers/{folder}")
    return found


def notebooks():
    found = {}
    for name in sorted(os.listdir(os.path.join(ROOT, "notebooks"))):
        if re.match(r"^\d\d-.*\.ipynb$", name):
            nb = json.load(open(os.path.join(ROOT, "notebooks", name), encoding="utf-8"))
            first = next((c for c in nb["cells"] if c["cell_type"] == "markdown"), None)
            text = "".join(first["source"]) if first else ""
            m = LINK.search(text)
            found[int(name[:2])] = (name, m.group(1) if m else None)
    return found


def label(url):
    m = re.match(r"https?://arxiv\.org/abs/([\w.]+)", url)
    if m:
        return f"arXiv {m.group(1)}"
    return re.sub(r"^https?://", "", url).split("/")[0]


def main():
    path = os.path.join(ROOT, "README.md")
    lines = open(path, encoding="utf-8").read().split("\n")
    libs, nbs = library_folders(), notebooks()
    out, in_table = [], False
    for line in lines:
        cells = [c.strip() for c in line.strip().strip("|").split("|")] if line.startswith("|") else None
        if cells and cells[:4] == ["P", "Paper", "Family", "Grade"]:
            in_table = True
            out.append(HEADER)
            continue
        if in_table and cells and set(cells[0]) <= {"-"}:
            out.append("|" + "---|" * 8)
            continue
        if not (in_table and cells and cells[0].isdigit()):
            in_table = in_table and bool(cells)
            out.append(line)
            continue
        n = int(cells[0])
        if len(cells) == 6:                      # the old table: P, Paper, Family, Grade, Notebook, Status
            cells = cells[:5] + ["—", "—", cells[5]]
        number, title, family, grade, notebook, library, paper, status = cells
        if n in nbs:
            name, link = nbs[n]
            notebook = f"[{name}](notebooks/{name})"
            if link:
                paper = f"[{label(link)}]({link})"
        if n in libs:
            library = f"[{libs[n].split('/')[-1]}]({libs[n]})"
        out.append(f"| {number} | {title} | {family} | {grade} | {notebook} | {library} | {paper} | {status} |")
    open(path, "w", encoding="utf-8").write("\n".join(out))
    print(f"readme-papers.py: {sum(1 for n in nbs)} notebook(s), {len(libs)} library folder(s)", file=sys.stderr)


if __name__ == "__main__":
    main()
