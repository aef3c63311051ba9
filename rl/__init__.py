"""Environments for collecting frame datasets and for keypoint-based reinforcement learning."""
