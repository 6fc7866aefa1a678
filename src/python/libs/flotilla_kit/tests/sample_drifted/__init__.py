"""A service whose migrations disagree with its models: what the models-match check must catch."""
