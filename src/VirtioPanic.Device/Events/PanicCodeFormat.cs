namespace VirtioPanic.Device;

/// <summary>How to read the codes of a guest report (record field <c>code_format</c>).</summary>
public enum PanicCodeFormat : byte
{
    /// <summary>Guest-defined values.</summary>
    Generic = 0,

    /// <summary>A Windows bugcheck: the stop code followed by its four parameters.</summary>
    WindowsBugcheck = 1,

    /// <summary>The five values a guest writes to the Hyper-V crash MSRs P0..P4.</summary>
    HyperVCrash = 2,
}
