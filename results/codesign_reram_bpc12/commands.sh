#!/bin/sh
# the search (manifest.search.json: 1400.89 s wall, the 8 models found already trained in runs/cache)
python experiments/codesign.py --device reram --out runs/codesign/reram_default
# its tables rewritten by the finished search resumed (importances as shares; manifest.json), nothing re-searched
python experiments/codesign.py --device reram --out runs/codesign/reram_default --resume --quiet
