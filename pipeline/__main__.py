from pipeline.cli import main
from pipeline.termination import exit_process

# vLLM starts its engine in spawned processes, which re-import __main__: keep the guard.
if __name__ == "__main__":
    exit_process(main())
