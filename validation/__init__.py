"""Outside references for the cost model, kept out of the ``wxy_hw`` package.

``validation.neurosim`` downloads, builds and drives DNN+NeuroSim V1.3 (CC BY-NC 4.0: fetched at run time into the
git-ignored ``validation/.neurosim/``; never imported, vendored or shipped by ``wxy_hw``, and nothing under ``wxy_hw/``
imports from here).
"""
