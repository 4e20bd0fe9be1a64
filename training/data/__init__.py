"""Training data: procedural scenes with exact depth (`scenes.render_scene`)."""
