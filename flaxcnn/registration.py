"""How a name joins a table of choices (optimizers, schedules, warm-ups, jobs, data
sources): `@registration.add_to(TABLE, "name", "an optimizer")`, refused when the name
is taken. `config.validate` reads the tables' keys."""


def add_to(table: dict, name: str, what: str = "an entry"):
  """Decorator: registers a function in `table` under `name`."""
  def add(fn):
    if name in table:
      raise ValueError(f"{what} named {name!r} is already registered")
    table[name] = fn
    return fn
  return add
