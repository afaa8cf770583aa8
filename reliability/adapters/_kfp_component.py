"""The one KFP component of the KFP adapter (its own module: KFP reads the function's
annotations as types, so they must not be postponed strings)."""


def reliability_step(target: str, step: str, options: str, params: str, run: str,
                     up1: str = "", up2: str = "", up3: str = "", up4: str = "",
                     up5: str = "", up6: str = "") -> str:
    """Run one attempt of a pipeline step (KFP ships only this function's source)."""
    from reliability.adapters.kfp import run_component

    return run_component(target, step, options, params, run,
                         [up1, up2, up3, up4, up5, up6])
