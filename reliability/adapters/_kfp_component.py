"""The one KFP component of the KFP adapter (its own module: KFP reads the function's
annotations as types, so they must not be postponed strings)."""


def reliability_step(target: str, step: str, options: str, params: str, run: str,
                     up1: str = "", up2: str = "", up3: str = "", up4: str = "",
                     up5: str = "", up6: str = "") -> str:
    """Run one attempt of a pipeline step (KFP ships only this function's source).

    The task process exists for this one call: the objects of KFP's modules, then of ours,
    live until it exits, so they are frozen out of the garbage collector's scans
    (``gc.freeze``) -- the collections during the import and the step, and the one at exit,
    then walk only the step's own objects.
    """
    import gc

    gc.freeze()
    from reliability.adapters.kfp import run_component

    gc.freeze()
    return run_component(target, step, options, params, run,
                         [up1, up2, up3, up4, up5, up6])
