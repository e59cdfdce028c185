namespace AttentionLab.Core;

/// <summary>How big an experiment runs: Smoke fits a CPU notebook in under a minute; Full is the paper-scale run for a GPU.</summary>
public enum RunSize
{
    Smoke,
    Full,
}
