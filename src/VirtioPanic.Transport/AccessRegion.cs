namespace VirtioPanic.Transport;

// Which register block an access hit; only used to make log lines precise.
internal enum AccessRegion
{
    PciConfigSpace,
    PciConfigWindow,
    CommonConfig,
    Notify,
    Isr,
    DeviceConfig,
    MsixTable,
    MsixPba,
    Bar,
    MmioRegisters,
}
