"""One module per service: its data, its implementation of the generated interface, and its
Starlette app. Services talk to each other only through the generated clients."""
