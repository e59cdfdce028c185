using System.Collections.Concurrent;
using System.Reflection;
using System.Text;
using Microsoft.Data.Analysis;

namespace AttentionLab.Core;

/// <summary>
/// Names, rounds or leaves out a record's property in <see cref="Tables.From{T}"/>; on positional records write <c>[property: Column(...)]</c>.
/// </summary>
[AttributeUsage(AttributeTargets.Property)]
public sealed class ColumnAttribute(string? name = null) : Attribute
{
    /// <summary>The column's name (default: the property's name in snake_case).</summary>
    public string? Name { get; } = name;
    /// <summary>Decimal places doubles are rounded to in the table (−1: not rounded).</summary>
    public int Digits { get; init; } = -1;
    /// <summary>Leaves the property out of the table.</summary>
    public bool Skip { get; init; }
}

/// <summary>
/// DataFrames from records: one column per public scalar property (string, bool, int, long, float, double, their
/// nullables, enums as text), named in snake_case unless <see cref="ColumnAttribute"/> says otherwise, in declaration
/// order. Properties of other types (arrays, nested records) are not columns: flatten them into scalar properties.
/// </summary>
public static class Tables
{
    sealed record ColumnSpec(string Name, Type Type, Func<object, object?> Get, int Digits);

    static readonly ConcurrentDictionary<Type, IReadOnlyList<ColumnSpec>> specs = new();

    /// <summary>The table of <paramref name="rows"/> (columns from <typeparamref name="T"/>'s properties).</summary>
    public static DataFrame From<T>(IEnumerable<T> rows)
    {
        ArgumentNullException.ThrowIfNull(rows);
        var list = rows.ToList();
        if (list.Any(r => r is null)) throw new ArgumentException("rows must not contain null.", nameof(rows));
        var columns = Columns(typeof(T));
        if (columns.Count == 0) throw new ArgumentException($"{typeof(T).Name} has no scalar public properties to make columns of.", nameof(rows));
        return new DataFrame(columns.Select(c => Column(c, list.Select(r => c.Get(r!)))));
    }

    /// <summary>The column names <see cref="From{T}"/> gives <typeparamref name="T"/>.</summary>
    public static IReadOnlyList<string> ColumnNames<T>() => Columns(typeof(T)).Select(c => c.Name).ToList();

    /// <summary>"MedianMs" → "median_ms", "KvTokensPerHead" → "kv_tokens_per_head", "PeakMiB" → "peak_mib", "TTFT" → "ttft".</summary>
    public static string SnakeCase(string name)
    {
        var sb = new StringBuilder();
        for (int i = 0; i < name.Length; i++)
        {
            char c = name[i];
            if (char.IsUpper(c) && i > 0)
            {
                char prev = name[i - 1];
                bool binaryUnit = c == 'B' && prev == 'i' && i >= 2 && char.IsUpper(name[i - 2]);        // KiB, MiB, GiB
                bool wordStart = char.IsLower(prev) || char.IsDigit(prev)
                                 || (char.IsUpper(prev) && i + 1 < name.Length && char.IsLower(name[i + 1]));   // "HTMLPage" → html_page
                if (wordStart && !binaryUnit) sb.Append('_');
            }
            sb.Append(char.ToLowerInvariant(c));
        }
        return sb.ToString();
    }

    static IReadOnlyList<ColumnSpec> Columns(Type type) => specs.GetOrAdd(type, t =>
        t.GetProperties(BindingFlags.Public | BindingFlags.Instance)
            .Where(p => p.GetIndexParameters().Length == 0 && p.GetMethod is not null && p.Name != "EqualityContract")
            .OrderBy(p => p.MetadataToken)
            .Select(p => (Property: p, Attribute: p.GetCustomAttribute<ColumnAttribute>()))
            .Where(x => x.Attribute?.Skip != true && IsScalar(x.Property.PropertyType))
            .Select(x => new ColumnSpec(x.Attribute?.Name ?? SnakeCase(x.Property.Name), x.Property.PropertyType, x.Property.GetValue,
                x.Attribute?.Digits ?? -1))
            .ToList());

    static bool IsScalar(Type t)
    {
        t = Nullable.GetUnderlyingType(t) ?? t;
        return t == typeof(string) || t == typeof(bool) || t == typeof(int) || t == typeof(long) || t == typeof(float) || t == typeof(double) || t.IsEnum;
    }

    static DataFrameColumn Column(ColumnSpec c, IEnumerable<object?> values)
    {
        var t = Nullable.GetUnderlyingType(c.Type) ?? c.Type;
        double? Round(object? v) => v is null ? null : c.Digits >= 0 ? Math.Round(Convert.ToDouble(v), c.Digits) : Convert.ToDouble(v);
        if (t == typeof(string)) return new StringDataFrameColumn(c.Name, values.Select(v => (string?)v));
        if (t.IsEnum) return new StringDataFrameColumn(c.Name, values.Select(v => v?.ToString()));
        if (t == typeof(bool)) return new BooleanDataFrameColumn(c.Name, values.Select(v => (bool?)v));
        if (t == typeof(int)) return new Int32DataFrameColumn(c.Name, values.Select(v => (int?)v));
        if (t == typeof(long)) return new Int64DataFrameColumn(c.Name, values.Select(v => (long?)v));
        if (t == typeof(float) && c.Digits < 0) return new SingleDataFrameColumn(c.Name, values.Select(v => (float?)v));
        return new DoubleDataFrameColumn(c.Name, values.Select(Round));
    }
}
