"""ffcore: FeatherFace V1/V2 face detection for the thesis workspace.

Importing the package does no work: models, data and tools live in submodules
(`ffcore.models`, `ffcore.data`, `ffcore.eval`, `ffcore.engine`, ...).
"""

__version__ = "0.1.0"
