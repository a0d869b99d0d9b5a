using VirtioPanic.Benchmarks.Queue;

// Runs one ring row for a fixed number of rounds and exits, for instruction counting under
// valgrind (ring-instructions.sh runs it at two lengths and divides the difference by the
// difference in chains, so set-up and start-up cancel out). Usage: ROW ROUNDS; no arguments
// lists the rows with their chains per round.
using var split = new SplitRingRows();
using var packed = new PackedRingRows();
split.SelfCheck();
packed.SelfCheck();

var rows = new (string Name, int ChainsPerRound, Func<long> Round)[]
{
    ("OneDescriptor_FullRingBatch", 256, () => split.OneDescriptor_FullRingBatch()),
    ("OneDescriptor_FullRingBatch_TryPopChain", 256, () => split.OneDescriptor_FullRingBatch_TryPopChain()),
    ("OneDescriptor_NotifyPerChain", 256, () => split.OneDescriptor_NotifyPerChain()),
    ("OneDescriptor_NotifyPerChain_SeparateCalls", 256, () => split.OneDescriptor_NotifyPerChain_SeparateCalls()),
    ("OneDescriptor_NotifyPerChain_TryPopChain", 256, () => split.OneDescriptor_NotifyPerChain_TryPopChain()),
    ("ThreeDescriptors_Batch85", 85, () => split.ThreeDescriptors_Batch85()),
    ("IndirectOfThree_FullRingBatch", 256, () => split.IndirectOfThree_FullRingBatch()),
    ("MemoryFloor_OneDescriptor", 256, () => split.MemoryFloor_OneDescriptor()),
    ("DriverPublish_ThreeDescriptors_Batch85", 85, () => split.DriverPublish_ThreeDescriptors_Batch85()),
    ("NearLimit_OneDescriptor_FullRingBatch", 256, () => split.NearLimit_OneDescriptor_FullRingBatch()),
    ("NearLimit_OneDescriptor_NotifyPerChain", 256, () => split.NearLimit_OneDescriptor_NotifyPerChain()),
    ("NearLimit_ThreeDescriptors_Batch85", 85, () => split.NearLimit_ThreeDescriptors_Batch85()),
    ("Packed_OneDescriptor_FullRingBatch", 256, () => packed.Packed_OneDescriptor_FullRingBatch()),
    ("Packed_PublishOnly_OneDescriptor_FullRingBatch", 256, () => packed.Packed_PublishOnly_OneDescriptor_FullRingBatch()),
    ("Packed_OneDescriptor_NotifyPerChain", 256, () => packed.Packed_OneDescriptor_NotifyPerChain()),
    ("Packed_ThreeDescriptors_Batch85", 85, () => packed.Packed_ThreeDescriptors_Batch85()),
    ("Packed_PublishOnly_ThreeDescriptors_Batch85", 85, () => packed.Packed_PublishOnly_ThreeDescriptors_Batch85()),
    ("Packed_IndirectOfThree_FullRingBatch", 256, () => packed.Packed_IndirectOfThree_FullRingBatch()),
};

if (args.Length >= 1 && args[0] == "--time")
{
    return RowTiming.Run(rows, args[1..]);
}

if (args.Length != 2 || !int.TryParse(args[1], out int rounds) || rounds < 0)
{
    foreach (var row in rows)
    {
        Console.WriteLine($"{row.Name} {row.ChainsPerRound}");
    }

    return args.Length == 0 ? 0 : 2;
}

foreach (var row in rows)
{
    if (row.Name != args[0])
    {
        continue;
    }

    long sum = 0;
    for (int i = 0; i < rounds; i++)
    {
        sum += row.Round();
    }

    // The sum keeps the rounds observable; printing it costs the same in both run lengths.
    Console.WriteLine($"{row.Name} rounds={rounds} chains={(long)rounds * row.ChainsPerRound} sum={sum}");
    return 0;
}

Console.Error.WriteLine($"unknown row {args[0]}");
return 2;
