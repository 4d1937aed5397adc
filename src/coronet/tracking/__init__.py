"""MLflow and provenance: the tracking store (:mod:`.store`), the pipeline's run (:mod:`.run`), the servable
model and the registry (:mod:`.registry`), where a run's inputs came from (:mod:`.lineage`) and the team's
tracking server (:mod:`.team_server`)."""
