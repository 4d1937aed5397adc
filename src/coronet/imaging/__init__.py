"""Images as the project reads them: the one decoder (:mod:`.decode`), the nuisance transforms (:mod:`.nuisance`)
and the input checks built on them (:mod:`.checks`)."""
