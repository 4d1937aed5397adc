"""The data stages: download, merge (sources, duplicates, manifest), resize, split. Never imports TensorFlow."""
