"""lambdaop: a declarative scheduler and orchestrator for Lambda functions and HTTP endpoints."""

__version__ = "0.1.0"
