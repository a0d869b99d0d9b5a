namespace VirtioPanic.Metrics;

// Tag values for the libraries' instruments (README "Telemetry"): an enum's member names in
// snake_case, computed once per enum so that recording a measurement formats nothing and boxes
// nothing (a tag value is a string from this table). Values outside the table map to "unknown",
// which keeps a tag's cardinality bounded whatever a guest or front end sends.
internal static class MetricTagNames
{
    internal const string Unknown = "unknown";

    internal static string[] Of<TEnum>()
        where TEnum : struct, Enum
    {
        TEnum[] values = Enum.GetValues<TEnum>();
        int max = 0;
        foreach (TEnum value in values)
        {
            max = Math.Max(max, Convert.ToInt32(value, System.Globalization.CultureInfo.InvariantCulture));
        }

        string[] names = new string[max + 1];
        Array.Fill(names, Unknown);
        foreach (TEnum value in values)
        {
            names[Convert.ToInt32(value, System.Globalization.CultureInfo.InvariantCulture)] = SnakeCase(value.ToString());
        }

        return names;
    }

    internal static string Lookup(string[] names, int value) => (uint)value < (uint)names.Length ? names[value] : Unknown;

    internal static string SnakeCase(string name)
    {
        var builder = new System.Text.StringBuilder(name.Length + 4);
        for (int i = 0; i < name.Length; i++)
        {
            char c = name[i];
            if (char.IsUpper(c))
            {
                if (i > 0)
                {
                    builder.Append('_');
                }

                builder.Append(char.ToLowerInvariant(c));
            }
            else
            {
                builder.Append(c);
            }
        }

        return builder.ToString();
    }
}
