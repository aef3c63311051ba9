"""Installs the project's packages (keypoints, rl, experiments, launch, benchmarks), pinned."""
import pathlib

import setuptools

_HERE = pathlib.Path(__file__).parent


def _requirements():
  lines = (_HERE / "requirements.txt").read_text().splitlines()
  return [l.strip() for l in lines if l.strip() and not l.startswith("#")]


setuptools.setup(
    name="transporter-keypoints",
    version="0.1.0",
    description="Unsupervised object keypoints (Transporter) and keypoint-based RL in JAX.",
    python_requires=">=3.11",
    packages=setuptools.find_packages(
        include=["keypoints*", "rl*", "experiments*", "launch*", "benchmarks*"]),
    install_requires=_requirements(),
)
