using VirtioPanic.Fuzz.Targets;

namespace VirtioPanic.Fuzz;

// The targets by name (fuzz/README.md describes each input format).
internal static class FuzzTargets
{
    internal static readonly string[] Names =
    [
        "split",
        "packed",
        "record",
        "pci",
        "mmio",
        "vhost-user",
        "restore-device",
        "restore-transport",
        "restore-queue",
    ];

    internal static IFuzzTarget? Create(string name) => name switch
    {
        "split" => new VirtqueueTarget(VirtqueueTarget.Mode.Split),
        "packed" => new VirtqueueTarget(VirtqueueTarget.Mode.Packed),
        "restore-queue" => new VirtqueueTarget(VirtqueueTarget.Mode.Restore),
        "record" => new RecordParserTarget(),
        "pci" => new TransportTarget(TransportKind.Pci),
        "mmio" => new TransportTarget(TransportKind.Mmio),
        "vhost-user" => new VhostUserTarget(),
        "restore-device" => new DeviceRestoreTarget(),
        "restore-transport" => new TransportRestoreTarget(),
        _ => null,
    };
}
