"""``recipes``: the recipes asrforge ships, listed, or one printed to start your own."""

from __future__ import annotations


def add_parsers(sub) -> None:
    r = sub.add_parser("recipes", help="list the shipped recipes, or print one (asrforge recipes show demo_ctc > my.yaml)")
    r_sub = r.add_subparsers(dest="action")
    s = r_sub.add_parser("show", help="print a shipped recipe's YAML")
    s.add_argument("name", help="a name from `asrforge recipes`, e.g. demo_ctc")
    s.set_defaults(func=show)
    r.set_defaults(func=list_recipes)


def list_recipes(args) -> None:
    from asrforge.recipe import shipped_recipes

    recipes = shipped_recipes()
    width = max(map(len, recipes))
    for name, what in recipes.items():
        print(f"{name:<{width}}  {what}")
    print("\ntrain one: asrforge train NAME data.train=... data.dev=... --out exp/NAME\n"
          "start your own from one: asrforge recipes show NAME > my.yaml")


def show(args) -> None:
    from asrforge.errors import ConfigError
    from asrforge.recipe import recipe_source, shipped_recipes

    shipped = shipped_recipes()
    if args.name.removesuffix(".yaml") not in shipped:
        raise ConfigError(f"no shipped recipe is called {args.name}; shipped: {', '.join(shipped)}")
    print(recipe_source(args.name.removesuffix(".yaml"))[0], end="")
