using System.Runtime.InteropServices;
using SharpFuzz;

namespace VirtioPanic.Fuzz;

// Usage:
//   VirtioPanic.Fuzz TARGET              under dotnet-fuzz-driver (libFuzzer): serves inputs forever
//   VirtioPanic.Fuzz TARGET PATH...      runs the target once per file (or per file in a directory):
//                                        reproduces a finding with a plain stack trace
//   VirtioPanic.Fuzz seeds DIRECTORY     writes the seed corpora (DIRECTORY/TARGET/*)
//   VirtioPanic.Fuzz list                prints the target names
internal static class Program
{
    private static int Main(string[] args)
    {
        if (args.Length == 0)
        {
            Console.Error.WriteLine("usage: VirtioPanic.Fuzz TARGET [INPUT...] | seeds DIRECTORY | list");
            return 2;
        }

        if (args[0] == "list")
        {
            foreach (string name in FuzzTargets.Names)
            {
                Console.WriteLine(name);
            }

            return 0;
        }

        if (args[0] == "seeds")
        {
            if (args.Length != 2)
            {
                Console.Error.WriteLine("usage: VirtioPanic.Fuzz seeds DIRECTORY");
                return 2;
            }

            UseDummyTraceMap();
            SeedGenerator.WriteAll(args[1]);
            return 0;
        }

        if (Array.IndexOf(FuzzTargets.Names, args[0]) < 0)
        {
            Console.Error.WriteLine($"unknown target '{args[0]}'; targets: {string.Join(", ", FuzzTargets.Names)}");
            return 2;
        }

        if (args.Length > 1)
        {
            return Reproduce(args[0], args.AsSpan(1));
        }

        if (Environment.GetEnvironmentVariable("__LIBFUZZER_SHM_ID") is null)
        {
            Console.Error.WriteLine("not started by dotnet-fuzz-driver: give input files to run them once (see fuzz/README.md)");
            return 2;
        }

        // The instrumented assemblies write to SharpFuzz's trace map, which exists only once Run has
        // attached the driver's shared memory: the target is created inside the first call.
        // Every exception that escapes the target is a finding: SharpFuzz prints it and reports a crash.
        IFuzzTarget? target = null;
        Fuzzer.LibFuzzer.Run(input => (target ??= FuzzTargets.Create(args[0])!).Run(input));
        return 0;
    }

    // Instrumented code writes to the trace map even when no fuzzer reads it.
    // SAFETY: SharpFuzz indexes the map with a 16-bit edge id, so 64 KiB covers every write; the
    // block is never freed (it lives as long as the process, like the driver's shared memory).
    private static unsafe void UseDummyTraceMap() => SharpFuzz.Common.Trace.SharedMem = (byte*)NativeMemory.AllocZeroed(1 << 16);

    private static int Reproduce(string name, ReadOnlySpan<string> paths)
    {
        UseDummyTraceMap();
        IFuzzTarget target = FuzzTargets.Create(name)!;
        int count = 0;
        foreach (string path in paths)
        {
            string[] files = Directory.Exists(path) ? Directory.GetFiles(path) : [path];
            Array.Sort(files, StringComparer.Ordinal);
            foreach (string file in files)
            {
                // No catch: the exception and its stack trace are the point.
                target.Run(File.ReadAllBytes(file));
                count++;
            }
        }

        Console.WriteLine($"{count} inputs ran without a finding");
        return 0;
    }
}
