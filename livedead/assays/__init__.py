"""The assay's answer from a prediction folder: cells tracked over time, their times of death, survival
per well and per condition of a plate map, and dose-response fits. numpy, scipy, pandas, laptrack,
lifelines and matplotlib; no torch (the counts are already made)."""
