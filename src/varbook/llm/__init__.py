"""Language-model experiments: approximate backward passes and character-level data."""
