"""What the service says. The cache tests edit this file to change the code and nothing else."""


def greet(name):
    return f"Hello, {name}!\n"
