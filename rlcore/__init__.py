"""rlcore: the photo editor, colour science, reward and RL agent. Imports neither Django nor Celery."""
