namespace VirtioPanic.Transport;

// Computes the level a level-triggered interrupt line should have right now, from the
// transport's interrupt state (PCI: ISR, MSI-X enable, INTx disable; MMIO: InterruptStatus).
internal interface IInterruptLevelSource
{
    bool ComputeInterruptLevel();
}
