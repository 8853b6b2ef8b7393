"""The project's test kit: fakes, fleets and real-service fixtures shared by tests/ and benchmarks/.

Neither tests/ nor benchmarks/ imports the other; both import this package. It is not part
of the product wheel (pyproject's package list names only the product packages).
"""
