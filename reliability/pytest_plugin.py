"""pytest plugin of pipeline-reliability (contract tests); inert unless enabled."""
