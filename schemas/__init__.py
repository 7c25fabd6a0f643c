"""The contract every other part of Alliance Workflows imports: pydantic models and their JSON Schemas.

Nothing here imports from the rest of the project.
"""
