namespace VirtioPanic.Fuzz;

// One fuzz target: decodes an input and drives the code under test with it. Any exception that
// escapes Run is a finding (the APIs driven here are documented not to throw for the input they
// are given, or the target catches exactly the documented exceptions).
internal interface IFuzzTarget
{
    void Run(ReadOnlySpan<byte> input);
}
