"""The annotation loop in QGIS: review proposals, accept them into a building layer, mark
complete areas and fine-tune again (the logic lives in ``ml_core.review.loop``)."""
